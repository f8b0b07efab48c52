"""Encoder names both sides agree on: spec strings and the JSON sidecar of an exported encoder.

A spec string names an encoder and its input size: `<model>-<size>[-int8]`, e.g. `lite0-64` or
`lite0-64-int8` (the default device class, a Raspberry Pi 4). `plada-build export-encoder` writes
`<id>.onnx` and, beside it, `<id>.json` (`EncoderInfo`), which the agent reads to know the input
size, feature dimension, preprocessing and the hash of the model it runs.

Light on purpose (no torch, no onnxruntime): the agent imports it on the device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from plada.atomic import write_text_atomic
from plada.errors import EncoderSpecError
from plada.files import sha256_file as sha256_file  # re-exported: the hash an EncoderInfo records

# Models the builder knows how to load and export. `opennsfw` is an ONNX-only ResNet-50-thin with
# its own (Caffe-style) preprocessing; it runs only through an exported/copied ONNX file.
KNOWN_MODELS: tuple[str, ...] = ("lite0", "lite1", "lite2", "opennsfw")
MIN_SIZE = 32  # five stride-2 stages: smaller inputs collapse to nothing
MAX_SIZE = 1024
# Preprocessing names (see plada/preprocess.py): RGB, (x - 127) / 128, NCHW.
PREPROCESS_TF = "tf-127-128"
DEFAULT_DEVICE_ENCODER = "lite0-64-int8"
# What an int8 export is calibrated on unless told otherwise (scikit-image photo crops); any other
# calibration is named in the sidecar (`quantization.calibration`, e.g. `corpus-68cb3417`) and in
# the builder's embedding cache key, so two files of one spec never look alike.
DEFAULT_CALIBRATION = "photo-crops"

_SPEC_RE = re.compile(r"^(?P<model>[a-z][a-z0-9]*)-(?P<size>[0-9]+)(?P<int8>-int8)?$")


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder model at one input size, optionally int8-quantised (ONNX Runtime)."""

    model: str
    size: int
    int8: bool = False

    def __post_init__(self) -> None:
        if self.model not in KNOWN_MODELS:
            raise EncoderSpecError(
                f"unknown encoder model {self.model!r}; known: {', '.join(KNOWN_MODELS)}"
            )
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise EncoderSpecError(
                f"encoder input size {self.size} out of range [{MIN_SIZE}, {MAX_SIZE}]"
            )

    @property
    def id(self) -> str:
        """The spec string, also the file stem of an exported encoder: `lite0-64-int8`."""
        return f"{self.model}-{self.size}" + ("-int8" if self.int8 else "")

    @property
    def float_spec(self) -> EncoderSpec:
        """The same model and size without quantisation."""
        return EncoderSpec(self.model, self.size, False)

    def __str__(self) -> str:
        return self.id


def parse_encoder_spec(text: str) -> EncoderSpec:
    """`lite0-64-int8` -> EncoderSpec('lite0', 64, True); EncoderSpecError names what is wrong."""
    match = _SPEC_RE.match(text.strip().lower())
    if match is None:
        raise EncoderSpecError(
            f"bad encoder spec {text!r}: expected <model>-<size>[-int8], e.g. lite0-64-int8"
        )
    return EncoderSpec(
        model=match["model"], size=int(match["size"]), int8=match["int8"] is not None
    )


class EncoderInfo(BaseModel):
    """The `<id>.json` written beside an exported `<id>.onnx` (and shared by its `.tflite`).

    Strict types (a size of "64" or an int8 of 1 is an error, not a guess); keys a newer writer
    adds are kept when the sidecar is rewritten."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    id: str
    model: str
    size: int
    int8: bool
    feature_dim: int
    sha256: str  # of the .onnx file
    preprocess: str = PREPROCESS_TF
    input_name: str = "input"
    output_name: str = "features"
    parity: dict[str, float] | None = None  # measured against the float reference at export
    quantization: dict[str, Any] | None = None  # how the int8 model was made
    exporter: str = "dynamo"  # torch.onnx exporter used ("dynamo" or "legacy"), or "copy"
    tflite_sha256: str | None = None  # of the .tflite beside it, after its parity check
    tflite_parity: dict[str, float] | None = None

    @field_validator("feature_dim")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("feature_dim must be > 0")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if not MIN_SIZE // 2 <= value <= MAX_SIZE:
            raise ValueError(f"size {value} out of range")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if re.fullmatch(r"[a-z][a-z0-9_]*", value) is None:
            raise ValueError(f"bad model name {value!r}")
        return value

    @property
    def spec(self) -> EncoderSpec:
        """EncoderSpecError for models outside KNOWN_MODELS (e.g. test encoders)."""
        return EncoderSpec(self.model, self.size, self.int8)

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump()
        for key in ("tflite_sha256", "tflite_parity"):  # only an exported .tflite has them
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_json(cls, obj: Any, *, where: str = "encoder info") -> EncoderInfo:
        """Validate a parsed sidecar; EncoderSpecError names the first bad key."""
        if not isinstance(obj, dict):
            raise EncoderSpecError(f"{where}: expected a JSON object")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise EncoderSpecError(f"{where}: {_problem(exc)}") from exc


_TYPE_NAMES = {"int_type": "int", "bool_type": "bool", "string_type": "str", "dict_type": "dict"}


def _problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"missing key {key!r}"
    if error["type"] in _TYPE_NAMES:
        return f"key {key!r} must be {_TYPE_NAMES[error['type']]}"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return f"key {key!r}: {error['msg']}"


def encoder_info_path(onnx_path: Path) -> Path:
    """`DIR/lite0-64-int8.onnx` -> `DIR/lite0-64-int8.json`."""
    return onnx_path.with_suffix(".json")


def read_encoder_info(onnx_path: Path, *, check_hash: bool = True) -> EncoderInfo:
    """Read and validate the sidecar of an exported encoder; optionally check the .onnx hash."""
    path = encoder_info_path(onnx_path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EncoderSpecError(f"{path}: encoder info file missing") from exc
    except (OSError, ValueError) as exc:
        raise EncoderSpecError(f"{path}: unreadable encoder info: {exc}") from exc
    info = EncoderInfo.from_json(obj, where=str(path))
    if check_hash:
        actual = sha256_file(onnx_path)
        if actual != info.sha256:
            raise EncoderSpecError(
                f"{onnx_path}: sha256 {actual[:16]}... does not match "
                f"{path} ({info.sha256[:16]}...)"
            )
    return info


def write_encoder_info(onnx_path: Path, info: EncoderInfo) -> Path:
    """Write `<id>.json` beside the .onnx atomically (temp file + os.replace)."""
    path = encoder_info_path(onnx_path)
    text = json.dumps(info.to_json(), indent=2, sort_keys=True) + "\n"
    write_text_atomic(path, text)
    return path
