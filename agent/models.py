"""The versioned model store: trained heads as ONNX (features -> probabilities) with metadata.

Layout under the state dir::

    models/
        state.json {"history": [entry, ...], "current": entry | null}
        000001-digits-v1/head.onnx softmax(((f - mean) * scale) W + b): standardisation inside
        000001-digits-v1/meta.json task, version, class names, payload digest, training facts
        000002-digits-v2/...

An entry folder is written under a temporary name and renamed into place, then state.json is
replaced atomically: a crash leaves either the old current model or the new one, never half of
one. The previous entry is kept so `rollback` can return to it; older ones are pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelStoreError
from plada.atomic import fsync_dir, write_bytes_atomic
from plada.head import HeadWeights

STORE_FORMAT = 1
_KEEP = 3  # current + previous + one more
_ENTRY = re.compile(r"^(\d{6})-([a-z0-9_-]{1,64})-v(\d+)$")


@dataclass(frozen=True)
class ModelMeta:
    """What is stored beside each head (meta.json)."""

    task: str
    version: int
    class_names: tuple[str, ...]
    payload_digest: str
    created_at: float  # unix seconds
    train_seconds: float
    train_accuracy: float
    backend: str
    hyper_params: Mapping[str, Any]
    encoder_id: str
    encoder_sha256: str
    feature_dim: int
    num_examples: int
    final_loss: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["hyper_params"] = dict(self.hyper_params)
        data["extra"] = dict(self.extra)
        data["format"] = STORE_FORMAT
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str) -> ModelMeta:
        try:
            return cls(
                task=str(data["task"]),
                version=int(data["version"]),
                class_names=tuple(str(c) for c in data["class_names"]),
                payload_digest=str(data["payload_digest"]),
                created_at=float(data["created_at"]),
                train_seconds=float(data["train_seconds"]),
                train_accuracy=float(data["train_accuracy"]),
                backend=str(data["backend"]),
                hyper_params=dict(data["hyper_params"]),
                encoder_id=str(data["encoder_id"]),
                encoder_sha256=str(data["encoder_sha256"]),
                feature_dim=int(data["feature_dim"]),
                num_examples=int(data["num_examples"]),
                final_loss=float(data["final_loss"]),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelStoreError(f"{where}: bad or missing field ({exc})") from exc


@dataclass(frozen=True)
class StoredModel:
    """One entry of the store."""

    name: str  # folder name, e.g. 000003-digits-v2
    path: Path  # the entry folder
    meta: ModelMeta

    @property
    def onnx_path(self) -> Path:
        return self.path / "head.onnx"

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def version(self) -> int:
        return self.meta.version

    @property
    def payload_digest(self) -> str:
        return self.meta.payload_digest


def export_head_onnx(weights: HeadWeights, *, metadata: Mapping[str, str] | None = None) -> bytes:
    """The head as an ONNX model: input `features` (B, D) -> output `probabilities` (B, C)."""
    from onnx import TensorProto, helper, numpy_helper

    d, c = weights.feature_dim, weights.num_classes
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["standardised"]),
        helper.make_node("MatMul", ["standardised", "weight"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "plada_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", c])],
        initializer=[
            numpy_helper.from_array(weights.mean.astype(np.float32), "mean"),
            numpy_helper.from_array(weights.scale.astype(np.float32), "scale"),
            numpy_helper.from_array(weights.weight.astype(np.float32), "weight"),
            numpy_helper.from_array(weights.bias.astype(np.float32), "bias"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="plada-agent"
    )
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    serialized: bytes = model.SerializeToString()
    return serialized


class ModelStore:
    """Versioned heads under `<state_dir>/models`; see the module docstring."""

    def __init__(self, state_dir: Path, *, keep: int = _KEEP) -> None:
        if keep < 2:
            raise ModelStoreError("the model store must keep at least 2 entries (for rollback)")
        self.root = Path(state_dir) / "models"
        self.keep = keep

    # -------------------------------------------------------------- state
    def _state_path(self) -> Path:
        return self.root / "state.json"

    def _read_state(self) -> tuple[list[str], str | None]:
        path = self._state_path()
        if not path.is_file():
            return [], None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            history = [str(n) for n in data["history"]]
            current = data["current"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelStoreError(f"{path}: unreadable model store state ({exc})") from exc
        if current is not None and current not in history:
            raise ModelStoreError(f"{path}: current entry {current!r} is not in the history")
        return history, current

    def _write_state(self, history: Sequence[str], current: str | None) -> None:
        body = {"format": STORE_FORMAT, "history": list(history), "current": current}
        write_bytes_atomic(self._state_path(), json.dumps(body, indent=2).encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _load(self, name: str) -> StoredModel:
        path = self.root / name
        meta_path = path / "meta.json"
        try:
            data = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"{meta_path}: unreadable ({exc})") from exc
        if not (path / "head.onnx").is_file():
            raise ModelStoreError(f"{path / 'head.onnx'} is missing")
        return StoredModel(
            name=name, path=path, meta=ModelMeta.from_json(data, where=str(meta_path))
        )

    # -------------------------------------------------------------- queries
    def current(self) -> StoredModel | None:
        """The model predictions use, or None if nothing was trained yet."""
        _, current = self._read_state()
        return None if current is None else self._load(current)

    def entries(self) -> list[StoredModel]:
        """Kept entries, oldest first."""
        history, _ = self._read_state()
        return [self._load(name) for name in history]

    def current_name(self) -> str | None:
        return self._read_state()[1]

    # -------------------------------------------------------------- changes
    def save(self, weights: HeadWeights, meta: ModelMeta) -> StoredModel:
        """Store a new head and make it current (atomic); prunes entries beyond `keep`."""
        if not _ENTRY.match(f"000000-{meta.task}-v{meta.version}"):
            raise ModelStoreError(f"task name {meta.task!r} is not [a-z0-9_-]{{1,64}}")
        if weights.num_classes != len(meta.class_names):
            raise ModelStoreError(
                f"head has {weights.num_classes} classes but meta names {len(meta.class_names)}"
            )
        onnx_bytes = export_head_onnx(
            weights,
            metadata={
                "task": meta.task,
                "version": str(meta.version),
                "class_names": json.dumps(list(meta.class_names)),
                "payload_digest": meta.payload_digest,
                "encoder_id": meta.encoder_id,
            },
        )
        with self._locked():
            history, _ = self._read_state()
            seq = 1 + max((int(m.group(1)) for n in history if (m := _ENTRY.match(n))), default=0)
            name = f"{seq:06d}-{meta.task}-v{meta.version}"
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
            try:
                (tmp / "head.onnx").write_bytes(onnx_bytes)
                (tmp / "meta.json").write_text(json.dumps(meta.to_json(), indent=2), "utf-8")
                for child in tmp.iterdir():
                    with open(child, "rb") as handle:
                        os.fsync(handle.fileno())
                os.replace(tmp, self.root / name)
                fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            history = [*history, name]
            dropped = history[: -self.keep]
            history = history[-self.keep :]
            self._write_state(history, name)
            for old in dropped:
                shutil.rmtree(self.root / old, ignore_errors=True)
            self._remove_strays(history)
        return self._load(name)

    def rollback(self) -> StoredModel:
        """Make the entry before the current one current again; the rolled-back one is removed."""
        with self._locked():
            history, current = self._read_state()
            if current is None:
                raise ModelStoreError("nothing to roll back: the model store is empty")
            position = history.index(current)
            if position == 0:
                raise ModelStoreError(
                    f"nothing to roll back to: {current} is the oldest kept model"
                )
            previous = history[position - 1]
            self._load(previous)  # fail before changing anything if it is damaged
            remaining = [n for n in history if n != current]
            self._write_state(remaining, previous)
            shutil.rmtree(self.root / current, ignore_errors=True)
        return self._load(previous)

    def _remove_strays(self, keep: Sequence[str]) -> None:
        """Delete temp folders of interrupted saves and entries no longer in the history."""
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
