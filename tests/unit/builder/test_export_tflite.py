"""TFLite export (litert-torch, the optional .venv-litert): conversion, the parity check, the file
on the agent's own TFLite backend against the ONNX export, the shared sidecar, failure paths.

Runs where litert-torch is installed (`make setup-litert`; `make test` runs it there with
`-m litert`); elsewhere it skips, except inside .venv-litert, where a missing package must fail.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from builder.errors import EncoderError
from plada.encoders import EncoderSpec, sha256_file
from plada.preprocess import preprocess_batch

_IN_LITERT_VENV = Path(sys.prefix).name == ".venv-litert"
pytestmark = [
    pytest.mark.litert,
    pytest.mark.torch,
    pytest.mark.skipif(
        importlib.util.find_spec("litert_torch") is None and not _IN_LITERT_VENV,
        reason="needs litert-torch (make setup-litert)",
    ),
]


def _held_out_batch(size: int, count: int = 13) -> np.ndarray:
    from builder.encoders.parity import real_images

    return preprocess_batch(real_images(count, seed=7), size=size)  # not the check's own images


def _tiny_module(feature_dim: int, seed: int, *, kernel: int = 3, stride: int = 2) -> object:
    """A conv -> ReLU -> global mean pool encoder: the Lite models' shape, in milliseconds."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, feature_dim, kernel_size=kernel, stride=stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x)).mean((2, 3))

    return Tiny().eval()


def test_convert_tflite_runs_on_the_agent_backend_at_any_batch(tmp_path: Path) -> None:
    # Prepare: a tiny torch encoder traced at batch 1, with the sidecar an export would write
    import torch

    from agent.features import embed_images, load_extractor
    from builder.encoders.parity import real_images
    from builder.encoders.tflite import convert_tflite

    module = _tiny_module(16, seed=3)
    images = real_images(11, seed=5)
    path = tmp_path / "tiny3-32.tflite"
    # Execute
    convert_tflite(module, preprocess_batch(images[:1], size=32), path)
    meta = {"id": "tiny3-32", "model": "tiny", "size": 32, "int8": False, "feature_dim": 16}
    meta |= {"sha256": sha256_file(path), "tflite_sha256": sha256_file(path)}
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    extractor = load_extractor(path, backend="tflite", threads=1)
    actual = embed_images(extractor, images, batch_size=4)  # 4, 4, 3: two resizes
    with torch.no_grad():
        expected = module(torch.from_numpy(preprocess_batch(images, size=32))).numpy()  # type: ignore[operator]
    # Assert
    assert actual.shape == (11, 16)
    assert float(np.abs(actual - expected).max()) <= 1e-5


def test_a_tflite_file_that_cannot_change_batch_is_named(tmp_path: Path) -> None:
    # Prepare: a 1x1 last feature map (here kernel = input size) makes litert-torch 0.10 bake the
    # traced batch into a RESHAPE, as it does for Lite0 at 32 px; the export check catches it
    from agent.errors import EncoderBackendError
    from agent.features import load_extractor
    from builder.encoders.tflite import convert_tflite

    path = tmp_path / "tiny4-32.tflite"
    convert_tflite(_tiny_module(8, seed=4, kernel=32, stride=32), _held_out_batch(32)[:1], path)
    meta = {"id": "tiny4-32", "model": "tiny", "size": 32, "int8": False, "feature_dim": 8}
    meta |= {"sha256": "x", "tflite_sha256": sha256_file(path)}
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    extractor = load_extractor(path, backend="tflite", threads=1)
    # Execute / Assert
    assert extractor.embed(_held_out_batch(32)[:1]).shape == (1, 8)
    with pytest.raises(EncoderBackendError, match="on a batch of 3"):
        extractor.embed(_held_out_batch(32)[:3])


@pytest.fixture(scope="module")
def lite0_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lite0-64 exported through the CLI with --tflite-only (the ONNX export is made first).

    64 px, the default device's size: at 32 px the last feature map is 1x1 and the file cannot
    change batch (see above), so that export fails its check."""
    from builder.cli import main as build_main

    out = tmp_path_factory.mktemp("enc")
    args = ["export-encoder", "--model", "lite0", "--size", "64", "--tflite-only", "--out"]
    assert build_main([*args, str(out)]) == 0
    return out


def test_tflite_export_records_itself_in_the_onnx_sidecar(lite0_export: Path) -> None:
    # Prepare
    from plada.encoders import read_encoder_info

    tflite = lite0_export / "lite0-64.tflite"
    # Execute
    meta = json.loads((lite0_export / "lite0-64.json").read_text(encoding="utf-8"))
    info = read_encoder_info(lite0_export / "lite0-64.onnx")  # the ONNX export is still valid
    # Assert
    assert meta["tflite_sha256"] == sha256_file(tflite)
    assert meta["tflite_parity"]["tflite_max_abs_diff"] <= 1e-3
    assert meta["tflite_parity"]["tflite_cosine_min"] >= 0.9999
    assert info.id == "lite0-64"


def test_tflite_export_matches_the_onnx_export_on_held_out_images(lite0_export: Path) -> None:
    # Prepare
    from agent.features import load_extractor
    from builder.encoders.parity import cosine_rows

    batch = _held_out_batch(64)
    tflite = load_extractor(lite0_export / "lite0-64.tflite", backend="tflite", threads=2)
    onnx = load_extractor(lite0_export / "lite0-64.onnx", backend="onnxruntime", threads=2)
    # Execute
    a, b = tflite.embed(batch), onnx.embed(batch)
    # Assert
    assert a.shape == (13, 1280)
    assert float(np.abs(a - b).max()) <= 1e-3
    assert float(cosine_rows(a, b).min()) >= 0.9999


def test_tflite_export_fails_its_parity_check_and_writes_nothing(
    lite0_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a copy of the ONNX export without the .tflite, and a bar no export can meet
    import shutil

    import builder.encoders.tflite as export

    for name in ("lite0-64.onnx", "lite0-64.json"):
        shutil.copyfile(lite0_export / name, tmp_path / name)
    before = (tmp_path / "lite0-64.json").read_bytes()
    monkeypatch.setattr(export, "TFLITE_MAX_ABS_DIFF", 0.0)
    # Execute / Assert
    with pytest.raises(EncoderError, match="TFLite fp32 differs from PyTorch"):
        export.export_tflite(EncoderSpec("lite0", 64), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite0-64.json", "lite0-64.onnx"]
    assert (tmp_path / "lite0-64.json").read_bytes() == before


def test_tflite_export_needs_the_onnx_sidecar(tmp_path: Path) -> None:
    # Prepare
    from builder.encoders.tflite import export_tflite

    # Execute / Assert
    with pytest.raises(EncoderError, match="shares the ONNX export's sidecar"):
        export_tflite(EncoderSpec("lite0", 32), tmp_path)


def test_tflite_export_refuses_int8(tmp_path: Path) -> None:
    # Prepare
    from builder.encoders.tflite import export_tflite

    # Execute / Assert
    with pytest.raises(EncoderError, match="int8 TFLite export is not implemented"):
        export_tflite(EncoderSpec("lite0", 64, True), tmp_path)
