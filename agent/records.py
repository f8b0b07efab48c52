"""The model store's records, typed and validated on load: meta.json per head, and state.json.

``models/state.json`` is the device's one record of what is installed. It is keyed by task: a
device holds several tasks at once, each with its own installed entry (the head that answers for
it), version floor, rolled-back payloads and retirement; ``current`` names the most recently
installed head (what single-task readers of format 2 took as "the" model)::

    {"format": 2,
     "history": ["000001-digits-v1", "000002-fashion-v1"],   kept entries, oldest first
     "current": "000002-fashion-v1",
     "tasks": {"digits": {"installed": "000001-digits-v1", "version": 1, "payload_digest": "..",
                          "highest_version": 1, "highest_digest": "..", "rolled_back": [],
                          "retired": null},
               "fashion": {...}}}

Format 1 (``history`` and ``current`` only) is migrated on load from the entries' meta.json. A
format-2 file written before tasks could be retired has no ``retired`` field: it reads as null.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import ModelStoreError

META_FORMAT: Literal[1] = 1
STATE_FORMAT: Literal[2] = 2
ENTRY_RE = re.compile(r"^(\d{6})-([a-z0-9_-]{1,64})-v(\d+)$")
_TASK = r"^[a-z0-9_-]{1,64}$"
_DIGEST = r"^[0-9a-f]{64}$"
MAX_ROLLED_BACK = 16  # remembered per task, newest last


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelMeta(_Record):
    """What is stored beside each head (meta.json)."""

    format: Literal[1] = Field(default=META_FORMAT, description="meta.json format")
    task: str = Field(pattern=_TASK, description="task name")
    version: int = Field(ge=1, description="task version")
    class_names: tuple[str, ...] = Field(min_length=2, description="class names, in label order")
    payload_digest: str = Field(pattern=_DIGEST, description="sha256 of the payload envelope")
    created_at: float = Field(description="unix seconds")
    train_seconds: float = Field(ge=0, description="head training time")
    train_accuracy: float = Field(description="accuracy on the training examples")
    backend: str = Field(description="head trainer backend")
    hyper_params: dict[str, Any] = Field(description="head hyper-parameters used")
    encoder_id: str = Field(description="encoder id from its sidecar")
    encoder_sha256: str = Field(description="sha256 of the encoder file the head was trained on")
    feature_dim: int = Field(ge=1, description="encoder feature dimension")
    num_examples: int = Field(ge=0, description="examples trained on")
    final_loss: float = Field(description="loss of the last epoch")
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form training facts")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str) -> ModelMeta:
        meta: ModelMeta = validate(cls, data, where=where)
        return meta


class RolledBack(_Record):
    version: int = Field(ge=1)
    payload_digest: str = Field(pattern=_DIGEST)
    at: float = Field(description="unix seconds of the rollback")
    revocation_digest: str | None = Field(
        default=None,
        pattern=_DIGEST,
        description="sha256 of the signed revocation (plada.revocation) that ordered it; "
        "None: an operator's `plada-agent rollback`",
    )


class Retired(_Record):
    """A signed retirement (plada.tombstone) applied here: the task's heads were removed."""

    version: int = Field(ge=1, description="versions up to this one are retired")
    at: float = Field(description="unix seconds the device applied it")
    tombstone_digest: str = Field(pattern=_DIGEST, description="sha256 of the tombstone")


class TaskRecord(_Record):
    """One task on this device: what is installed, and the floor the version policy keeps."""

    installed: str | None = Field(default=None, description="entry serving the task, if any")
    version: int | None = Field(default=None, ge=1, description="installed version")
    payload_digest: str | None = Field(default=None, pattern=_DIGEST)
    highest_version: int = Field(default=0, ge=0, description="highest version ever installed")
    highest_digest: str | None = Field(default=None, pattern=_DIGEST)
    rolled_back: tuple[RolledBack, ...] = Field(
        default=(), description="payloads an operator rolled back: not reinstalled unless forced"
    )
    retired: Retired | None = Field(
        default=None,
        description="the retirement applied here, if any: versions up to it are not installed "
        "again; a newer version teaches the task anew",
    )

    @property
    def is_retired(self) -> bool:
        return self.installed is None and self.retired is not None


class StoreState(_Record):
    format: Literal[2] = Field(default=STATE_FORMAT)
    history: tuple[str, ...] = Field(default=(), description="kept entries, oldest first")
    current: str | None = Field(default=None, description="the entry predictions use")
    tasks: dict[str, TaskRecord] = Field(default_factory=dict, description="task -> record")


def validate(model: type[Any], data: Any, *, where: str) -> Any:
    """model.model_validate(data), or ModelStoreError naming the file and the bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
            f"{'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ModelStoreError(f"{where}: {fields}") from exc


def entry_seq(name: str) -> int:
    match = ENTRY_RE.match(name)
    if match is None:
        raise ModelStoreError(f"{name!r} is not a model store entry name")
    return int(match.group(1))


def derive_tasks(
    history: tuple[str, ...],
    metas: Mapping[str, ModelMeta],
    previous: Mapping[str, TaskRecord],
) -> dict[str, TaskRecord]:
    """Task records after a change: each task's installed entry is its newest kept entry.

    Floors (highest version) and rolled-back payloads carry over from `previous` and only grow;
    a task whose entries are all gone keeps its record without an installed entry.
    """
    tasks = dict(previous)
    newest: dict[str, str] = {}
    for entry in sorted(history, key=entry_seq):
        newest[metas[entry].task] = entry
    for task in sorted(set(tasks) | set(newest)):
        old = tasks.get(task, TaskRecord())
        name = newest.get(task)
        meta = metas[name] if name is not None else None
        highest: int = old.highest_version
        highest_digest: str | None = old.highest_digest
        if meta is not None and meta.version > highest:
            highest, highest_digest = meta.version, meta.payload_digest
        tasks[task] = TaskRecord(
            installed=name,
            version=meta.version if meta else None,
            payload_digest=meta.payload_digest if meta else None,
            highest_version=highest,
            highest_digest=highest_digest,
            rolled_back=old.rolled_back,
            retired=old.retired,
        )
    return tasks
