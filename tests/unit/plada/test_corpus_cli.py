"""`plada corpus build|info|verify|leakage` through plada.cli.main, as a user runs them."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plada.cli import main
from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_corpus_cli_build_concatenates_importers_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    folder = make_tiny_imagefolder(tmp_path / "folder", train_per_class=1, test_per_class=1)
    arr = np.arange(2 * 6 * 6, dtype=np.uint8).reshape(2, 6, 6)
    idx = tmp_path / "x-idx3-ubyte.gz"
    header = struct.pack(">BBBB3I", 0, 0, 8, 3, 2, 6, 6)
    idx.write_bytes(gzip.compress(header + arr.tobytes(), mtime=0))
    Image.new("RGB", (5, 5), (9, 9, 9)).save(tmp_path / "one.png")
    (tmp_path / "list.txt").write_text("one.png\n")
    # Execute
    code, out, _ = _run(
        capsys,
        "corpus", "build", "--out", str(tmp_path / "c"),
        "--idx", f"digits={idx}", "--imagefolder", f"shapes={folder}",
        "--list", str(tmp_path / "list.txt"), "--json",
    )  # fmt: skip
    again, out2, _ = _run(
        capsys,
        "corpus", "build", "--out", str(tmp_path / "c2"),
        "--idx", f"digits={idx}", "--imagefolder", f"shapes={folder}",
        "--list", str(tmp_path / "list.txt"), "--json",
    )  # fmt: skip
    # Assert
    doc = json.loads(out)
    assert code == 0 and again == 0
    assert [(s["name"], s["count"]) for s in doc["sources"]] == [
        ("digits", 2),
        ("shapes", 8),
        ("filelist", 1),
    ]
    assert doc["fingerprint"] == json.loads(out2)["fingerprint"]


def test_corpus_cli_build_names_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    none_given = _run(capsys, "corpus", "build", "--out", str(tmp_path / "c"))
    missing = _run(capsys, "corpus", "build", "--out", str(tmp_path / "c"), "--idx", "nope.gz")
    # Assert
    assert none_given[0] == 2 and "--imagefolder" in none_given[2]
    assert missing[0] == 2 and "nope.gz" in missing[2]
    assert not (tmp_path / "c").exists()


def test_corpus_cli_info_json_has_the_contract_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=30)
    # Execute
    code, out, _ = _run(capsys, "corpus", "info", str(corpus.path), "--json")
    text_code, text, _ = _run(capsys, "corpus", "info", str(corpus.path))
    # Assert
    doc = json.loads(out)
    assert code == 0 and text_code == 0
    assert doc["fingerprint"] == corpus.fingerprint and doc["num_images"] == 30
    assert doc["sources"][0] == {"name": "tiny-shapes", "count": 20, "start": 0}
    assert doc["bytes_on_disk"] > 0
    assert corpus.fingerprint in text and "tiny-gray" in text


def test_corpus_cli_verify_names_a_flipped_byte_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=40)
    data = corpus.read_bytes(23)
    shard = corpus.path / corpus.shards[0].file
    raw = bytearray(shard.read_bytes())
    at = raw.find(data)
    raw[at + 100] ^= 0x01
    shard.write_bytes(bytes(raw))
    # Execute
    ok_code, _, _ = _run(capsys, "corpus", "verify", str(tmp_path / "nothing"))
    code, out, _ = _run(capsys, "corpus", "verify", str(corpus.path), "--json")
    text_code, text, _ = _run(capsys, "corpus", "verify", str(corpus.path))
    # Assert
    assert ok_code == 2
    doc = json.loads(out)
    assert code == 1 and text_code == 1
    assert doc["ok"] is False and doc["bad_indices"] == [23]
    assert "image 23" in text and "FAILED" in text


def test_corpus_cli_verify_checks_expected_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=10)
    # Execute
    good = _run(capsys, "corpus", "verify", str(corpus.path), "--fingerprint", corpus.fingerprint)
    bad = _run(capsys, "corpus", "verify", str(corpus.path), "--fingerprint", "ab" * 32)
    # Assert
    assert good[0] == 0 and "OK" in good[1]
    assert bad[0] == 2 and "CorpusMismatchError" in bad[2]


def test_corpus_cli_leakage_json_keys_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=40)
    target = make_tiny_imagefolder(tmp_path / "t", train_per_class=2, test_per_class=2, seed=5)
    cache = str(tmp_path / "cache")
    # Execute
    clean_code, clean_out, _ = _run(
        capsys, "corpus", "leakage", str(corpus.path), str(target), "--json", "--cache-dir", cache
    )
    corpus.image(7).save(target / "test" / "cross" / "copy.png")
    code, out, _ = _run(
        capsys, "corpus", "leakage", str(corpus.path), str(target), "--json", "--no-cache"
    )
    # Assert
    assert clean_code == 0 and json.loads(clean_out)["overlap"] == 0
    doc = json.loads(out)
    assert code == 1
    assert (doc["overlap"], doc["near"], doc["exact"]) == (1, 0, 1)
    assert doc["examples"][0]["corpus_index"] == 7
