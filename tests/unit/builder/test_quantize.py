"""int8 float-block ladder: every rung quantises with the ranges the first one calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from builder.cli import main as build_main
from builder.encoders import quantize
from builder.encoders.parity import ort_session, run_onnx

pytestmark = pytest.mark.torch
pytest.importorskip("torch")
ort_quant = pytest.importorskip("onnxruntime.quantization")


def _fp32_export(out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    captured: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: captured.append(" ".join(map(str, a))))
    args = ["export-encoder", "--model", "lite0", "--size", "32", "--out", str(out), "--json"]
    assert build_main(args) == 0
    monkeypatch.undo()
    return Path(json.loads(captured[-1])["path"])


def test_the_ladder_calibrates_once_and_quantises_as_a_fresh_calibration_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the real Lite0 at 32 px; a target no rung reaches, so all three rungs run
    if not quantize._calibration_cache(ort_quant.quantize_static, tmp_path / "ranges.json"):
        pytest.skip("this onnxruntime has no calibration cache: every rung calibrates")
    fp32 = _fp32_export(tmp_path / "enc", monkeypatch)
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, size=(24, 3, 32, 32)).astype(np.float32)
    parity = rng.uniform(-1, 1, size=(8, 3, 32, 32)).astype(np.float32)
    expected = run_onnx(ort_session(fp32), parity)
    work = tmp_path / "work"
    work.mkdir()
    (work / "fp32.onnx").write_bytes(fp32.read_bytes())
    monkeypatch.setattr(quantize, "INT8_TARGET_COSINE", 2.0)
    monkeypatch.setattr(quantize, "INT8_MIN_COSINE", -1.0)
    monkeypatch.setattr(quantize, "MAX_FLOAT_BLOCKS", 2)
    runs: list[int] = []
    collect = ort_quant.calibrate.MinMaxCalibrater.collect_data

    def counted(self: object, reader: object) -> object:
        runs.append(1)
        return collect(self, reader)

    monkeypatch.setattr(ort_quant.calibrate.MinMaxCalibrater, "collect_data", counted)
    # Execute
    path, record, _ = quantize.search_int8(
        work / "fp32.onnx", calibration, parity, expected, float_blocks=None
    )
    # Assert: three rungs, one calibration; the kept rung is byte for byte a fresh quantisation
    assert [t["float_blocks"] for t in record["tried"]] == [0, 1, 2]
    assert len(runs) == 1
    fresh = work / "fresh.onnx"
    quantize._quantize(work / "fp32.onnx", fresh, calibration, record["float_blocks"])
    assert len(runs) == 2 and fresh.read_bytes() == path.read_bytes()
