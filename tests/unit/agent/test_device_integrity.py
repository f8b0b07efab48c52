"""The agent CLIs and the device's data under hostile input (issue 14, items 1, 4, 5, 10, 12,
14, 15): named errors and documented exit codes, bounded memory, checked reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.pipeline import apply_payload, open_corpus, open_feature_cache
from agent.profiles import load_profile
from plada.corpus import Corpus
from plada.errors import CorpusCorruptError
from tools.tiny.damage import corrupt_corpus_image, gray_png
from tools.tiny.device import TinyDevice, make_device

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def device(tmp_path: Path) -> TinyDevice:
    return make_device(tmp_path, num_images=40, epochs=3)


def _child_peak_rss_mb(argv: list[str]) -> tuple[int, float, str]:
    """Run `python argv` in a fresh process; (exit code, its peak RSS in MB, stderr)."""
    code = (
        "import resource, subprocess, sys\n"
        "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(run.returncode, rss)\n"
        "sys.stderr.write(run.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, sys.executable, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    status, rss = out.stdout.split()
    return int(status), float(rss), out.stderr


def test_warm_cache_on_a_corrupt_corpus_exits_74_naming_the_image(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    corrupt_corpus_image(device.config.corpus.path, index=5)
    # Execute
    code = main(["warm-cache", "--config", str(device.config_path)])
    # Assert
    err = capsys.readouterr().err
    assert code == 74
    assert "CorpusCorruptError" in err and "image 5" in err
    assert "plada corpus verify" in err


def test_predict_refuses_a_decompression_bomb_with_exit_66(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: 1.3 KB declaring 20000 x 20000 pixels
    bomb = gray_png(device.root / "bomb.png", width=20_000, height=20_000, rows=64)
    # Execute
    code = main(["predict", str(bomb), "--config", str(device.config_path)])
    # Assert
    assert code == 66
    err = capsys.readouterr().err
    assert "bomb.png: over the decode bound" in err and "400000000 pixels" in err


def test_predict_refuses_a_large_image_before_decoding_it(device: TinyDevice) -> None:
    # Prepare: a real 12000 x 12000 PNG (140 KB); decoding it took 938 MB before the bound
    big = gray_png(device.root / "big.png", width=12_000, height=12_000)
    # Execute
    argv = ["-m", "agent", "predict", str(big), "--config", str(device.config_path)]
    code, peak_mb, err = _child_peak_rss_mb(argv)
    # Assert
    assert code == 66, err
    assert "over the decode bound" in err
    assert peak_mb < 400


def test_apply_refuses_a_1_gib_file_without_reading_it(device: TinyDevice) -> None:
    # Prepare: a sparse 1 GiB file
    huge = device.root / "huge.plada"
    with huge.open("wb") as handle:
        handle.truncate(1 << 30)
    # Execute
    argv = ["-m", "agent", "apply", str(huge), "--config", str(device.config_path)]
    code, peak_mb, err = _child_peak_rss_mb(argv)
    # Assert
    assert code == 65, err
    assert "PayloadLimitError" in err
    assert peak_mb < 400


def test_apply_keeps_each_task_version_floor_across_other_tasks(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: v2 of shapes, then another task becomes current
    config = str(device.config_path)
    files = {}
    for name, task, version in (("s2", "shapes", 2), ("o1", "other", 1), ("s1", "shapes", 1)):
        files[name] = device.root / f"{name}.plada"
        files[name].write_bytes(device.payload(task=task, version=version))
    # Execute
    codes = [main(["apply", str(files[n]), "--config", config]) for n in ("s2", "o1", "s1")]
    # Assert
    assert codes == [0, 0, 65]
    assert "is not newer than version 2, installed here before" in capsys.readouterr().err


def test_check_config_reports_an_empty_or_broken_corpus(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the corpus folder emptied of its header, then with a truncated shard
    config = str(device.config_path)
    corpus = device.config.corpus.path
    header = (corpus / "corpus.json").read_bytes()
    (corpus / "corpus.json").unlink()
    # Execute
    empty = main(["check-config", "--config", config])
    empty_out = capsys.readouterr().out
    (corpus / "corpus.json").write_bytes(header)
    shard = next((corpus / "shards").iterdir())
    shard.write_bytes(shard.read_bytes()[:100])
    broken = main(["check-config", "--config", config, "--json"])
    broken_doc = json.loads(capsys.readouterr().out)
    # Assert
    assert (empty, broken) == (74, 74)
    assert "corpus.path:" in empty_out and "not a plada corpus" in empty_out
    assert broken_doc["valid"] is False
    assert any("truncated" in p or "bytes" in p for p in broken_doc["problems"])


def test_nan_in_a_feature_cache_block_is_recomputed(device: TinyDevice) -> None:
    # Prepare: a warm cache whose block 0 then holds NaN (a damaged disk)
    cache = open_feature_cache(device.config, open_corpus(device.config))
    cache.warm()
    block = next(cache.path.glob("block-000000*"))
    np.save(block, np.full((32, 24), np.nan, dtype=np.float16))
    # Execute
    applied = apply_payload(device.payload(version=1), config=device.config)
    # Assert: the block was dropped, its images embedded again, and training went through
    assert applied.features_computed == 32
    assert applied.train_accuracy > 0.5


def test_a_flipped_bit_in_a_cache_block_is_caught(device: TinyDevice) -> None:
    # Prepare: one bit of block 1's features flipped (no NaN: a silently wrong value)
    cache = open_feature_cache(device.config, open_corpus(device.config))
    cache.warm()
    block = next(cache.path.glob("block-000001*"))
    raw = bytearray(block.read_bytes())
    raw[200] ^= 0x10
    block.write_bytes(bytes(raw))
    # Execute
    _, computed = cache.features(np.arange(32, 40))
    # Assert
    assert computed == 8
    assert cache.missing_blocks() == [1]


@pytest.mark.parametrize("profile", sorted((ROOT / "firmware_configs").glob("*.toml")))
def test_shipped_configs_catch_every_bit_flip_in_a_corpus_image(
    profile: Path, tmp_path: Path
) -> None:
    # Prepare: the device class's own read setting, on a tiny corpus
    config = load_profile(profile).agent_config(
        device_id="d", overrides={"mqtt": {"username": "d"}}
    )
    device = make_device(tmp_path, num_images=8)
    data = device.corpus.read_bytes(2)
    shard = device.corpus.path / device.corpus.shards[0].file
    original = shard.read_bytes()
    at = original.find(data) + data.find(b"IDAT") + 6
    missed = 0
    # Execute: every single-bit flip in the first 16 bytes of compressed pixels
    for bit in range(16 * 8):
        raw = bytearray(original)
        raw[at + bit // 8] ^= 1 << (bit % 8)
        shard.write_bytes(bytes(raw))
        corpus = Corpus.open(device.corpus.path, verify_reads=config.corpus.verify_reads)
        try:
            corpus.image(2)
            missed += 1
        except CorpusCorruptError:
            pass
        finally:
            corpus.close()
    # Assert
    assert missed == 0
