"""The corpus format: reads, fingerprint, determinism, verify, and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plada.corpus import (
    ArraySource,
    Corpus,
    CorpusSource,
    CorpusWriter,
    FileListSource,
    ImageFolderSource,
    build_corpus,
    check_fingerprint,
    idx_source,
    pixel_digest,
    read_idx,
)
from plada.errors import (
    CorpusBuildError,
    CorpusCorruptError,
    CorpusMismatchError,
    CorpusNotFoundError,
)
from tools.tiny.corpus import TINY_CLASSES, make_tiny_corpus, tiny_arrays, tiny_labels


def _flip_byte_of_image(corpus: Corpus, index: int) -> Path:
    """Flip one byte in the middle of image `index`'s stored PNG, inside its shard file."""
    data = corpus.read_bytes(index)
    for shard in corpus.shards:
        path = corpus.path / shard.file
        raw = bytearray(path.read_bytes())
        at = raw.find(data)
        if at >= 0:
            raw[at + len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
            return path
    raise AssertionError("image bytes not found in any shard")


def test_corpus_tiny_reads_every_image_in_order(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=60, seed=3)
    expected, _ = tiny_arrays(60, seed=3)
    # Execute
    streamed = list(corpus.iter_images())
    # Assert
    assert len(corpus) == 60
    assert [i for i, _ in streamed] == list(range(60))
    assert [(s.name, s.count, s.start) for s in corpus.sources] == [
        ("tiny-shapes", 40, 0),
        ("tiny-gray", 20, 40),
    ]
    assert np.array_equal(np.asarray(corpus.image(7)), expected[7])
    assert corpus.image(7).mode == "RGB" and corpus.image(45).mode == "L"
    assert [im.size for im in corpus.images([0, 59])] == [(32, 32), (32, 32)]


def test_corpus_tiny_labels_are_balanced_and_match_classes() -> None:
    # Execute
    labels = tiny_labels(300, seed=0)
    # Assert
    assert np.bincount(labels).tolist() == [75] * len(TINY_CLASSES)


def test_corpus_fingerprint_is_sha256_of_manifest_and_deterministic(tmp_path: Path) -> None:
    # Prepare / Execute
    a = make_tiny_corpus(tmp_path / "a", num_images=50, seed=1)
    b = make_tiny_corpus(tmp_path / "b", num_images=50, seed=1)
    c = make_tiny_corpus(tmp_path / "c", num_images=50, seed=2)
    # Assert
    assert a.fingerprint == hashlib.sha256((a.path / "manifest.tsv").read_bytes()).hexdigest()
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert (a.path / "index.bin").read_bytes() == (b.path / "index.bin").read_bytes()


def test_corpus_shards_are_plain_zip_files(tmp_path: Path) -> None:
    # Prepare
    import zipfile

    corpus = make_tiny_corpus(tmp_path / "c", num_images=300)
    # Execute
    with zipfile.ZipFile(corpus.path / corpus.shards[1].file) as zf:
        bad = zf.testzip()
        member = zf.read("000000130.png")
    # Assert
    assert len(corpus.shards) == 3  # 128 images per shard
    assert bad is None
    assert member == corpus.read_bytes(130)


def test_corpus_verify_names_the_index_of_a_flipped_byte(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=200)
    _flip_byte_of_image(corpus, 137)
    corpus.close()
    # Execute
    report = Corpus.open(tmp_path / "c").verify()
    # Assert
    assert not report.ok
    assert report.bad_indices == [137]
    assert "image 137" in report.problems[0].message
    assert report.num_checked == 199


def test_corpus_verify_reads_refuses_a_corrupt_image(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=40)
    _flip_byte_of_image(corpus, 11)
    corpus.close()
    checked = Corpus.open(tmp_path / "c", verify_reads=True)
    # Execute / Assert
    with pytest.raises(CorpusCorruptError, match="image 11"):
        checked.read_bytes(11)
    with pytest.raises(CorpusCorruptError, match="image 11"):
        checked.image(11)
    assert checked.image(12).size == (32, 32)


def test_corpus_unchecked_read_of_corrupt_png_still_fails_loudly(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=20)
    _flip_byte_of_image(corpus, 4)
    corpus.close()
    unchecked = Corpus.open(tmp_path / "c")
    # Execute / Assert: PNG CRCs catch it even without verify_reads
    with pytest.raises(CorpusCorruptError, match="image 4"):
        unchecked.image(4)


def test_corpus_deep_verify_catches_pixels_that_differ_from_manifest(tmp_path: Path) -> None:
    # Prepare: rewrite manifest hash of image 3 and re-sign header, so only pixels disagree
    corpus = make_tiny_corpus(tmp_path / "c", num_images=20)
    manifest = (corpus.path / "manifest.tsv").read_bytes().split(b"\n")
    fields = manifest[4].split(b"\t")
    fields[5] = b"0" * 64
    manifest[4] = b"\t".join(fields)
    data = b"\n".join(manifest)
    (corpus.path / "manifest.tsv").write_bytes(data)
    header = json.loads((corpus.path / "corpus.json").read_text())
    header["fingerprint"] = hashlib.sha256(data).hexdigest()
    (corpus.path / "corpus.json").write_text(json.dumps(header))
    # Execute
    reopened = Corpus.open(corpus.path)
    shallow = reopened.verify()
    deep = reopened.verify(deep=True)
    # Assert
    assert shallow.ok
    assert deep.bad_indices == [3]
    assert deep.problems[0].kind == "pixels"


def test_corpus_open_reports_missing_shard_and_verify_lists_its_indices(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=300)
    (corpus.path / corpus.shards[1].file).unlink()
    corpus.close()
    # Execute / Assert
    with pytest.raises(CorpusNotFoundError, match=r"shard-00001\.zip.*images 128\.\.255"):
        Corpus.open(tmp_path / "c")
    report = Corpus.open(tmp_path / "c", check_shards=False).verify()
    assert report.bad_indices == list(range(128, 256))


def test_corpus_open_reports_truncated_shard(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=300)
    shard = corpus.path / corpus.shards[2].file
    shard.write_bytes(shard.read_bytes()[:1000])
    corpus.close()
    # Execute / Assert
    with pytest.raises(CorpusCorruptError, match=r"shard-00002\.zip has 1000 bytes"):
        Corpus.open(tmp_path / "c")
    report = Corpus.open(tmp_path / "c", check_shards=False).verify()
    assert report.problems[0].kind == "truncated" and report.problems[0].index is None
    assert report.bad_indices[-1] == 299 and report.bad_indices[0] >= 256


def test_corpus_open_rejects_manifest_not_matching_fingerprint(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=10)
    with (corpus.path / "manifest.tsv").open("ab") as f:
        f.write(b"x")
    # Execute / Assert
    with pytest.raises(CorpusCorruptError, match=r"manifest\.tsv.*does not match the fingerprint"):
        Corpus.open(corpus.path)


def test_corpus_open_rejects_index_not_matching_header(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=10)
    raw = bytearray((corpus.path / "index.bin").read_bytes())
    raw[9] ^= 1
    (corpus.path / "index.bin").write_bytes(bytes(raw))
    # Execute / Assert
    with pytest.raises(CorpusCorruptError, match=r"index\.bin"):
        Corpus.open(corpus.path)


def test_corpus_open_rejects_wrong_expected_fingerprint(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=10)
    # Execute / Assert
    with pytest.raises(CorpusMismatchError, match="expected 00"):
        Corpus.open(corpus.path, expected_fingerprint="00" * 32)
    with pytest.raises(CorpusMismatchError):
        check_fingerprint(corpus, "ab" * 32)
    check_fingerprint(corpus, corpus.fingerprint)


@pytest.mark.parametrize(
    ("setup", "error", "pattern"),
    [
        ("nodir", CorpusNotFoundError, "no corpus directory"),
        ("noheader", CorpusNotFoundError, r"corpus\.json is missing"),
        ("badjson", CorpusCorruptError, "unreadable JSON"),
        ("version", CorpusCorruptError, "format version 99"),
        ("nomanifest", CorpusNotFoundError, r"manifest\.tsv is missing"),
    ],
)
def test_corpus_open_names_the_bad_file(
    tmp_path: Path, setup: str, error: type[Exception], pattern: str
) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=5)
    path = corpus.path
    if setup == "nodir":
        path = tmp_path / "nothing"
    elif setup == "noheader":
        (path / "corpus.json").unlink()
    elif setup == "badjson":
        (path / "corpus.json").write_text("{")
    elif setup == "version":
        header = json.loads((path / "corpus.json").read_text())
        header["version"] = 99
        (path / "corpus.json").write_text(json.dumps(header))
    elif setup == "nomanifest":
        (path / "manifest.tsv").unlink()
    # Execute / Assert
    with pytest.raises(error, match=pattern):
        Corpus.open(path)


def test_corpus_index_out_of_range_is_an_index_error(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=5)
    # Execute / Assert
    with pytest.raises(IndexError, match="index 5 out of range"):
        corpus.image(5)
    with pytest.raises(IndexError):
        corpus.read_bytes(-1)


def test_corpus_writer_interrupted_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "c"
    # Execute
    with pytest.raises(RuntimeError), CorpusWriter(out) as writer:
        writer.add_image(Image.new("L", (4, 4), 7), source="s", key="k")
        raise RuntimeError("interrupted")
    # Assert
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_corpus_build_overwrite_replaces_and_refuses_without_flag(tmp_path: Path) -> None:
    # Prepare
    first = make_tiny_corpus(tmp_path / "c", num_images=5)
    src = ArraySource(np.zeros((2, 3, 3), np.uint8), name="zeros")
    # Execute / Assert
    with pytest.raises(CorpusBuildError, match="already exists"):
        build_corpus([src], first.path)
    second = build_corpus([src], first.path, overwrite=True)
    assert len(Corpus.open(first.path)) == 2 and second.fingerprint != first.fingerprint


def test_corpus_build_on_several_threads_writes_what_one_thread_writes(tmp_path: Path) -> None:
    # Prepare: RGB and gray images, several shards, a second source
    images, _ = tiny_arrays(300, seed=3)
    gray = images[:40].mean(axis=3).astype(np.uint8)

    def sources() -> list[ArraySource]:
        return [ArraySource(images, name="rgb"), ArraySource(gray, name="gray")]

    # Execute
    one = build_corpus(sources(), tmp_path / "one", images_per_shard=64, workers=1)
    two = build_corpus(sources(), tmp_path / "two", images_per_shard=64, workers=3)
    # Assert: same fingerprint, index and shard bytes
    assert two.fingerprint == one.fingerprint and len(two) == 340
    for name in ("index.bin", "corpus.json"):
        assert (one.path / name).read_bytes() == (two.path / name).read_bytes()
    shards = sorted(p.name for p in (one.path / "shards").iterdir())
    assert len(shards) == 6
    for shard in shards:
        assert (one.path / "shards" / shard).read_bytes() == (
            two.path / "shards" / shard
        ).read_bytes()


def test_corpus_imagefolder_orders_by_path_and_composites_alpha_over_white(
    tmp_path: Path,
) -> None:
    # Prepare
    root = tmp_path / "folder"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    Image.new("RGBA", (5, 5), (255, 0, 0, 0)).save(root / "b" / "clear.png")
    Image.new("L", (6, 6), 9).save(root / "a" / "z.png")
    Image.new("RGB", (7, 7), (1, 2, 3)).save(root / "a" / "y.bmp")
    (root / "a" / "notes.txt").write_text("not an image")
    # Execute
    corpus = build_corpus([ImageFolderSource(root, name="folder")], tmp_path / "c")
    # Assert
    assert [corpus.entry(i).key for i in range(3)] == ["a/y.bmp", "a/z.png", "b/clear.png"]
    assert corpus.image(2).mode == "RGB"
    assert corpus.image(2).getpixel((0, 0)) == (255, 255, 255)
    assert corpus.image(1).mode == "L"


def test_corpus_imagefolder_names_an_unreadable_file(tmp_path: Path) -> None:
    # Prepare
    root = tmp_path / "folder"
    root.mkdir()
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    # Execute / Assert
    with pytest.raises(CorpusBuildError, match=r"broken\.png"):
        build_corpus([ImageFolderSource(root)], tmp_path / "c")
    assert not (tmp_path / "c").exists()


def _write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


@pytest.mark.parametrize("gz", [False, True])
def test_corpus_idx_importer_reads_mnist_style_files(tmp_path: Path, gz: bool) -> None:
    # Prepare
    arr = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    _write_idx(path, arr, gz=gz)
    # Execute
    corpus = build_corpus([idx_source(path, name="x")], tmp_path / "c")
    # Assert
    assert len(corpus) == 3
    assert np.array_equal(np.asarray(corpus.image(2)), arr[2])
    assert corpus.image(2).mode == "L" and corpus.entry(2).key == "2"


def test_corpus_idx_importer_rejects_bad_files(tmp_path: Path) -> None:
    # Prepare
    bad_magic = tmp_path / "magic"
    bad_magic.write_bytes(b"\x01\x02\x08\x03")
    short = tmp_path / "short"
    _write_idx(short, np.zeros((2, 2, 2), np.uint8), gz=False)
    short.write_bytes(short.read_bytes()[:-1])
    # Execute / Assert
    with pytest.raises(CorpusBuildError, match="bad magic"):
        read_idx(bad_magic)
    with pytest.raises(CorpusBuildError, match=r"short: IDX header says \(2, 2, 2\)"):
        read_idx(short)


def test_corpus_file_list_importer_keeps_list_order_and_names_missing_line(
    tmp_path: Path,
) -> None:
    # Prepare
    Image.new("L", (3, 3), 1).save(tmp_path / "one.png")
    Image.new("L", (3, 3), 2).save(tmp_path / "two.png")
    good = tmp_path / "good.txt"
    good.write_text("# comment\ntwo.png\none.png\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("one.png\nmissing.png\n")
    # Execute
    corpus = build_corpus([FileListSource.from_list_file(good, name="list")], tmp_path / "c")
    # Assert
    assert [corpus.entry(i).key for i in range(2)] == ["two.png", "one.png"]
    assert corpus.image(0).getpixel((0, 0)) == 2
    with pytest.raises(CorpusBuildError, match=r"line 2: .*missing\.png"):
        build_corpus([FileListSource.from_list_file(bad)], tmp_path / "d")


def test_corpus_concatenation_keeps_order_sources_and_pixels(tmp_path: Path) -> None:
    # Prepare
    a = make_tiny_corpus(tmp_path / "a", num_images=30, seed=1)
    b = build_corpus([ArraySource(np.full((4, 5, 5), 200, np.uint8), name="flat")], tmp_path / "b")
    # Execute
    both = build_corpus([CorpusSource(a.path), CorpusSource(b.path)], tmp_path / "ab")
    # Assert
    assert len(both) == 34
    assert [(s.name, s.count) for s in both.sources] == [
        ("tiny-shapes", 20),
        ("tiny-gray", 10),
        ("flat", 4),
    ]
    assert both.read_bytes(29) == a.read_bytes(29)
    assert pixel_digest(both.image(31)) == b.entry(1).pixel_sha256
    assert both.verify(deep=True).ok


def test_corpus_source_names_must_be_tsv_safe(tmp_path: Path) -> None:
    # Prepare
    src = ArraySource(np.zeros((1, 2, 2), np.uint8), name="bad\tname")
    # Execute / Assert
    with pytest.raises(CorpusBuildError, match="source name"):
        build_corpus([src], tmp_path / "c")


def test_corpus_info_reports_sources_and_size(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=30)
    # Execute
    info = corpus.info()
    # Assert
    assert info["fingerprint"] == corpus.fingerprint and info["num_images"] == 30
    assert [s["name"] for s in info["sources"]] == ["tiny-shapes", "tiny-gray"]
    assert info["bytes_on_disk"] == sum(p.stat().st_size for p in corpus.path.rglob("*.*"))


def test_corpus_shard_from_another_corpus_is_caught(tmp_path: Path) -> None:
    # Prepare: same layout, other pixels; copy b's first shard over a's
    a = make_tiny_corpus(tmp_path / "a", num_images=200, seed=1)
    b = make_tiny_corpus(tmp_path / "b", num_images=200, seed=2)
    foreign = (b.path / b.shards[0].file).read_bytes()
    (a.path / a.shards[0].file).write_bytes(foreign)
    expected_kind = "truncated" if len(foreign) < a.shards[0].num_bytes else "size"
    a.close()
    # Execute / Assert
    with pytest.raises(CorpusCorruptError, match=r"shard-00000\.zip has \d+ bytes"):
        Corpus.open(tmp_path / "a")
    report = Corpus.open(tmp_path / "a", check_shards=False).verify()
    assert report.problems[0].kind == expected_kind and report.problems[0].index is None
    assert set(report.bad_indices) <= set(range(128)) and len(report.bad_indices) > 100
