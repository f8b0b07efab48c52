"""DerivedSource: a corpus of any size made from another by index-seeded transforms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from plada.cli import main
from plada.corpus import Corpus, DerivedSource, build_corpus
from plada.corpus.derived import OUTPUT_SIDES, apply_params, derived_params
from plada.errors import CorpusBuildError
from tools.tiny.corpus import make_tiny_corpus

_KEY = re.compile(r"^(\d+):c(\d+),(\d+),(\d+),(\d+):f([01]):r(0|90|180|270):s(\d+)$")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("derived") / "base"
    make_tiny_corpus(path, num_images=12)
    return path


def test_same_base_count_and_seed_give_the_same_fingerprint(base: Path, tmp_path: Path) -> None:
    # Execute
    one = build_corpus([DerivedSource(base, 30)], tmp_path / "a")
    two = build_corpus([DerivedSource(base, 30)], tmp_path / "b")
    other_seed = build_corpus([DerivedSource(base, 30, seed=1)], tmp_path / "c")
    prefix = build_corpus([DerivedSource(base, 20)], tmp_path / "d")
    # Assert
    assert len(one) == 30 and one.fingerprint == two.fingerprint
    assert other_seed.fingerprint != one.fingerprint
    # image i depends on (seed, i) alone: a smaller corpus is a prefix of a larger one
    assert [prefix.entry(i) for i in range(20)] == [one.entry(i) for i in range(20)]


def test_every_key_names_its_base_image_and_transform(base: Path, tmp_path: Path) -> None:
    # Prepare
    base_corpus = Corpus.open(base)
    # Execute
    corpus = build_corpus([DerivedSource(base, 40, seed=3)], tmp_path / "c")
    # Assert
    assert corpus.sources[0].name == f"derived-{base_corpus.fingerprint[:16]}"
    turns_seen = set()
    for i in range(len(corpus)):
        entry = corpus.entry(i)
        match = _KEY.match(entry.key)
        assert match, entry.key
        b, x0, y0, cw, ch, flip, rot, side = (int(g) for g in match.groups())
        base_entry = base_corpus.entry(b)
        assert b == i % len(base_corpus)
        assert 0 <= x0 <= base_entry.width - cw and 0 <= y0 <= base_entry.height - ch
        assert side in OUTPUT_SIDES and max(entry.width, entry.height) == side
        turns_seen.add(rot)
        # the key alone rebuilds the pixels from the base image
        params = derived_params(i, seed=3, base_index=b, size=(base_entry.width, base_entry.height))
        assert params.key() == entry.key and (params.flip, 90 * params.turns) == (flip, rot)
        again = apply_params(base_corpus.image(b), params)
        assert np.array_equal(np.asarray(again), np.asarray(corpus.image(i)))
    assert len(turns_seen) > 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_images": 0}, "num_images"),
        ({"num_images": 2.5}, "num_images"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_named(base: Path, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"num_images": 5, **kwargs}
    with pytest.raises(CorpusBuildError, match=field):
        DerivedSource(base, **args)  # type: ignore[arg-type]


def test_a_missing_base_corpus_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorpusBuildError, match=r"base corpus .*nowhere"):
        DerivedSource(tmp_path / "nowhere", 5)


def test_cli_builds_a_derived_corpus_and_names_bad_arguments(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = main(
        ["corpus", "build", "--out", str(tmp_path / "c"), "--derive", f"big={base}",
         "--derive-count", "25", "--derive-seed", "2", "--json"]
    )  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    no_count = main(["corpus", "build", "--out", str(tmp_path / "x"), "--derive", str(base)])
    no_count_err = capsys.readouterr().err
    bad_count = main(
        ["corpus", "build", "--out", str(tmp_path / "y"), "--derive", str(base),
         "--derive-count", "-3"]
    )  # fmt: skip
    bad_count_err = capsys.readouterr().err
    # Assert
    assert code == 0 and doc["sources"] == [{"name": "big", "count": 25, "start": 0}]
    expected = build_corpus([DerivedSource(base, 25, seed=2, name="big")], tmp_path / "d")
    assert doc["fingerprint"] == expected.fingerprint
    assert no_count == 2 and "--derive-count is required" in no_count_err
    assert bad_count == 2 and "num_images" in bad_count_err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("chunk", [7, 100, 1 << 20])
def test_manifest_scan_gives_the_same_lines_and_runs_at_any_chunk_size(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Prepare: three sources, the middle one a derived corpus, so runs cross chunk boundaries
    from plada.corpus import CorpusSource, manifest_lines

    built = build_corpus(
        [CorpusSource(base), DerivedSource(base, 17, name="mid"), CorpusSource(base)],
        tmp_path / "c",
    )
    expected = [built.entry(i) for i in range(len(built))]
    # Execute
    monkeypatch.setattr(manifest_lines, "_CHUNK", chunk)
    corpus = Corpus.open(tmp_path / "c")
    # Assert
    assert [corpus.entry(i) for i in range(len(corpus))] == expected
    assert [(s.name, s.count, s.start) for s in corpus.sources] == [
        ("tiny-shapes", 8, 0), ("tiny-gray", 4, 8), ("mid", 17, 12),
        ("tiny-shapes", 8, 29), ("tiny-gray", 4, 37),
    ]  # fmt: skip
