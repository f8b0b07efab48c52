"""Encoder spec strings and the exported-encoder sidecar (`<id>.json`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plada.encoders import (
    EncoderInfo,
    EncoderSpec,
    parse_encoder_spec,
    read_encoder_info,
    sha256_file,
    write_encoder_info,
)
from plada.errors import EncoderSpecError


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("lite0-64", EncoderSpec("lite0", 64, False)),
        ("lite0-64-int8", EncoderSpec("lite0", 64, True)),
        ("LITE2-224", EncoderSpec("lite2", 224, False)),
        ("opennsfw-224", EncoderSpec("opennsfw", 224, False)),
    ],
)
def test_parse_encoder_spec_round_trips(text: str, spec: EncoderSpec) -> None:
    # Execute
    parsed = parse_encoder_spec(text)
    # Assert
    assert parsed == spec
    assert parse_encoder_spec(parsed.id) == parsed


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lite9-64", "unknown encoder model 'lite9'"),
        ("lite0-16", "size 16 out of range"),
        ("lite0-64-fp16", "expected <model>-<size>"),
        ("lite0", "expected <model>-<size>"),
        ("", "expected <model>-<size>"),
    ],
)
def test_parse_encoder_spec_names_the_problem(text: str, match: str) -> None:
    with pytest.raises(EncoderSpecError, match=match):
        parse_encoder_spec(text)


def test_encoder_spec_id_and_float_spec() -> None:
    spec = EncoderSpec("lite1", 96, True)
    assert spec.id == "lite1-96-int8"
    assert str(spec) == "lite1-96-int8"
    assert spec.float_spec.id == "lite1-96"


def _info(path: Path) -> EncoderInfo:
    return EncoderInfo(
        id="lite0-64-int8",
        model="lite0",
        size=64,
        int8=True,
        feature_dim=1280,
        sha256=sha256_file(path),
        parity={"int8_cosine_mean": 0.995},
    )


def test_encoder_info_round_trips_beside_the_onnx(tmp_path: Path) -> None:
    # Prepare
    onnx = tmp_path / "lite0-64-int8.onnx"
    onnx.write_bytes(b"not really onnx")
    info = _info(onnx)
    # Execute
    path = write_encoder_info(onnx, info)
    read = read_encoder_info(onnx)
    # Assert
    assert path == tmp_path / "lite0-64-int8.json"
    assert read == info
    assert read.spec == EncoderSpec("lite0", 64, True)
    assert json.loads(path.read_text())["preprocess"] == "tf-127-128"


def test_read_encoder_info_detects_a_changed_onnx(tmp_path: Path) -> None:
    # Prepare
    onnx = tmp_path / "lite0-64-int8.onnx"
    onnx.write_bytes(b"one")
    write_encoder_info(onnx, _info(onnx))
    onnx.write_bytes(b"two")
    # Execute / Assert
    with pytest.raises(EncoderSpecError, match=r"sha256 .* does not match"):
        read_encoder_info(onnx)
    assert read_encoder_info(onnx, check_hash=False).id == "lite0-64-int8"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"feature_dim": None}, "missing key 'feature_dim'"),
        ({"size": "64"}, "key 'size' must be int"),
        ({"int8": 1}, "key 'int8' must be bool"),
        ({"feature_dim": 0}, "feature_dim must be > 0"),
        ({"model": "Bad Name"}, "bad model name"),
    ],
)
def test_read_encoder_info_names_a_bad_key(
    tmp_path: Path, change: dict[str, object], match: str
) -> None:
    # Prepare
    onnx = tmp_path / "x.onnx"
    onnx.write_bytes(b"x")
    obj = _info(onnx).to_json()
    for key, value in change.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    (tmp_path / "x.json").write_text(json.dumps(obj))
    # Execute / Assert
    with pytest.raises(EncoderSpecError, match=match):
        read_encoder_info(onnx)


def test_read_encoder_info_names_a_missing_sidecar(tmp_path: Path) -> None:
    with pytest.raises(EncoderSpecError, match=r"x\.json: encoder info file missing"):
        read_encoder_info(tmp_path / "x.onnx")
