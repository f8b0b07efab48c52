"""The versioned model store, and with it the device's one record of what is installed.

Layout under the state dir::

    models/
        state.json          agent.records.StoreState: kept entries, the most recent one, one
                            record per task (installed entry and version, version floor, rolled
                            back payloads, retirement)
        000001-digits-v1/head.onnx  softmax(((f - mean) * scale) W + b) (agent.head_onnx)
        000001-digits-v1/meta.json  agent.records.ModelMeta
        000002-digits-v2/...

An entry folder is written under a temporary name and renamed into place, then state.json is
replaced atomically, under a lock shared by the CLI and the daemon: a crash leaves either the old
record or the new one, never half of one. The version policy (agent.versions) is checked under
that lock.

Several tasks live side by side: each task's installed entry answers for it (`installed()`), each
has its own history, so a rollback (`rollback(task)`) or a retirement (`retire(task, ...)`) of one
never touches another. Each task keeps up to `keep` entries (its installed one and the ones it can
roll back to); older ones are pruned. At most `max_tasks` tasks are installed at once: a new task
beyond that is refused (agent.versions.check_capacity), never is an installed one dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ModelStoreError
from agent.head_onnx import export_head_onnx
from agent.records import (
    ENTRY_RE,
    MAX_ROLLED_BACK,
    ModelMeta,
    Retired,
    RolledBack,
    StoreState,
    TaskRecord,
    derive_tasks,
    entry_seq,
    validate,
)
from agent.versions import check_capacity, check_installable
from plada.atomic import fsync_dir, write_bytes_atomic
from plada.head import HeadWeights

if TYPE_CHECKING:
    from agent.config import AgentConfig

__all__ = [
    "ModelMeta",
    "ModelStore",
    "RetireOutcome",
    "RevokeOutcome",
    "StoredModel",
    "export_head_onnx",
    "open_store",
]

logger = logging.getLogger(__name__)
_KEEP = 3  # per task: installed + previous + one more


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


@dataclass(frozen=True)
class RetireOutcome:
    """What a retirement did: `removed` entries; `newer` when a version above the tombstone's is
    installed (nothing removed: the tombstone is older than what serves); `already` when this
    retirement was applied before."""

    task: str
    version: int
    removed: tuple[str, ...]
    newer: int | None = None
    already: bool = False


@dataclass(frozen=True)
class RevokeOutcome:
    """What a revocation did: `removed` entries of the revoked payload (empty: it was never
    installed here, or was pruned); `serving` the task's version installed afterwards (None:
    no head of the task is left); `already` when this payload was rolled back before."""

    task: str
    version: int
    removed: tuple[str, ...]
    serving: int | None = None
    already: bool = False


class ModelStore:
    """Versioned heads under `<state_dir>/models`; see the module docstring."""

    def __init__(self, state_dir: Path, *, keep: int = _KEEP, max_tasks: int | None = None) -> None:
        if keep < 2:
            raise ModelStoreError("the model store must keep at least 2 entries (for rollback)")
        self.root = Path(state_dir) / "models"
        self.keep = keep
        self.max_tasks = max_tasks

    # -------------------------------------------------------------- the record
    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> StoreState:
        """The record (format 1 is migrated in memory); ModelStoreError if unreadable."""
        path = self.state_path
        if not path.is_file():
            return StoreState()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"{path}: unreadable model store state ({exc})") from exc
        if isinstance(data, dict) and data.get("format", 1) == 1:
            data = self._migrate_v1(data, where=str(path))
        state: StoreState = validate(StoreState, data, where=f"{path}: model store state")
        if state.current is not None and state.current not in state.history:
            raise ModelStoreError(f"{path}: current entry {state.current!r} is not in the history")
        return state

    def _migrate_v1(self, data: dict[str, object], *, where: str) -> dict[str, object]:
        history = data.get("history")
        if not isinstance(history, list) or not all(isinstance(n, str) for n in history):
            raise ModelStoreError(f"{where}: unreadable model store state (history)")
        names = tuple(history)
        metas = {name: self._load(name).meta for name in names}
        tasks = derive_tasks(names, metas, {})
        return {"format": 2, "history": names, "current": data.get("current"), "tasks": tasks}

    def _write_state(self, state: StoreState) -> None:
        write_bytes_atomic(self.state_path, state.model_dump_json(indent=1).encode("utf-8"))

    def records(self) -> dict[str, TaskRecord]:
        """Task -> record: what is installed, per task."""
        return dict(self.state().tasks)

    def task_record(self, task: str) -> TaskRecord | None:
        return self.state().tasks.get(task)

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
        """The most recently installed head still installed, or None if nothing is."""
        current = self.state().current
        return None if current is None else self._load(current)

    def installed(self, task: str | None = None) -> list[StoredModel]:
        """Each task's installed head, by task name (only `task`'s, if given)."""
        state = self.state()
        return [
            self._load(record.installed)
            for name, record in sorted(state.tasks.items())
            if record.installed is not None and task in (None, name)
        ]

    def entries(self) -> list[StoredModel]:
        """Kept entries, oldest first."""
        return [self._load(name) for name in self.state().history]

    def current_name(self) -> str | None:
        return self.state().current

    def check(self) -> list[str]:
        """What is inconsistent between the record and the entries (empty when all is well)."""
        try:
            state = self.state()
            metas = {name: self._load(name).meta for name in state.history}
        except ModelStoreError as exc:
            return [str(exc)]
        problems = []
        expected = derive_tasks(state.history, metas, state.tasks)
        for task, record in state.tasks.items():
            if record != expected[task]:
                problems.append(f"task {task}: record {record} disagrees with the entries")
        strays = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and p.name not in state.history
        )
        problems += [f"stray folder {name} is not in the history" for name in strays]
        return problems

    # -------------------------------------------------------------- changes
    def save(self, weights: HeadWeights, meta: ModelMeta, *, force: bool = False) -> StoredModel:
        """Store a new head and make it current (atomic); the version policy applies unless
        `force`. Prunes superseded entries beyond `keep`."""
        if not ENTRY_RE.match(f"000000-{meta.task}-v{meta.version}"):
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
            state = self.state()
            if not force:
                check_installable(
                    state.tasks.get(meta.task),
                    task=meta.task,
                    version=meta.version,
                    digest=meta.payload_digest,
                )
            # The bound holds even under --force: it protects the device, not a version order.
            check_capacity(state.tasks, task=meta.task, max_tasks=self.max_tasks)
            seq = 1 + max((entry_seq(n) for n in state.history), default=0)
            name = f"{seq:06d}-{meta.task}-v{meta.version}"
            self._write_entry(name, onnx_bytes, meta)
            metas = {n: self._load(n).meta for n in state.history} | {name: meta}
            history = self._pruned((*state.history, name), metas)
            self._commit(state, history, name, metas)
        return self._load(name)

    def _write_entry(self, name: str, onnx_bytes: bytes, meta: ModelMeta) -> None:
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

    def _pruned(self, history: tuple[str, ...], metas: dict[str, ModelMeta]) -> tuple[str, ...]:
        """Keep each task's newest `keep` entries (its installed one and its rollback targets):
        one task's installs never push out another task's history."""
        per_task: dict[str, list[str]] = {}
        for name in history:
            per_task.setdefault(metas[name].task, []).append(name)
        kept = {n for names in per_task.values() for n in names[-self.keep :]}
        return tuple(n for n in history if n in kept)

    def _commit(
        self,
        state: StoreState,
        history: tuple[str, ...],
        current: str | None,
        metas: dict[str, ModelMeta],
        tasks: dict[str, TaskRecord] | None = None,
    ) -> None:
        tasks = derive_tasks(history, metas, tasks if tasks is not None else state.tasks)
        self._write_state(StoreState(history=history, current=current, tasks=tasks))
        self._remove_strays(history)

    def rollback(self, task: str | None = None) -> StoredModel:
        """Make `task`'s entry before its installed one installed again; the rolled-back entry is
        removed and recorded in the task's record, so the policy does not install it again.
        Other tasks are untouched. Without `task`, the one installed task (ModelStoreError when
        several are installed: rolling back "the" model would pick one at random)."""
        with self._locked():
            state = self.state()
            task = self._rollback_task(state, task)
            record = state.tasks[task]
            current = str(record.installed)  # _rollback_task checked it is installed
            own = [n for n in state.history if self._load(n).meta.task == task]
            position = own.index(current)
            if position == 0:
                raise ModelStoreError(
                    f"nothing to roll back to: {current} is the oldest kept model of task {task}"
                )
            previous = own[position - 1]
            undone = self._load(current).meta
            self._load(previous)  # fail before changing anything if it is damaged
            history = tuple(n for n in state.history if n != current)
            metas = {n: self._load(n).meta for n in history}
            mark = RolledBack(
                version=undone.version, payload_digest=undone.payload_digest, at=time.time()
            )
            tasks = dict(state.tasks)
            tasks[task] = record.model_copy(
                update={"rolled_back": (*record.rolled_back, mark)[-MAX_ROLLED_BACK:]}
            )
            latest = state.current if state.current in history else self._latest(history)
            self._commit(state, history, latest, metas, tasks)
        return self._load(previous)

    def _rollback_task(self, state: StoreState, task: str | None) -> str:
        installed = sorted(t for t, r in state.tasks.items() if r.installed is not None)
        if not installed:
            raise ModelStoreError("nothing to roll back: the model store is empty")
        if task is None:
            if len(installed) > 1:
                raise ModelStoreError(
                    f"{len(installed)} tasks are installed ({', '.join(installed)}): name the "
                    "one to roll back with --task"
                )
            return installed[0]
        if task not in installed:
            raise ModelStoreError(
                f"nothing to roll back: task {task!r} is not installed here "
                f"(installed: {', '.join(installed)})"
            )
        return task

    @staticmethod
    def _latest(history: tuple[str, ...]) -> str | None:
        return max(history, key=entry_seq) if history else None

    def retire(
        self, task: str, *, version: int, tombstone_digest: str, at: float | None = None
    ) -> RetireOutcome:
        """Apply a verified retirement: remove every head of `task` (the record stays, marked
        retired, so versions up to `version` are never installed again). A newer installed
        version than `version` is left alone (the tombstone is older than what serves)."""
        with self._locked():
            state = self.state()
            record = state.tasks.get(task, TaskRecord())
            if record.retired is not None and record.retired.version >= version:
                return RetireOutcome(task, version, removed=(), already=True)
            if record.version is not None and record.version > version:
                return RetireOutcome(task, version, removed=(), newer=record.version)
            removed = tuple(n for n in state.history if self._load(n).meta.task == task)
            history = tuple(n for n in state.history if n not in removed)
            metas = {n: self._load(n).meta for n in history}
            tasks = dict(state.tasks)
            mark = Retired(
                version=version,
                at=time.time() if at is None else at,
                tombstone_digest=tombstone_digest,
            )
            tasks[task] = record.model_copy(update={"retired": mark})
            latest = state.current if state.current in history else self._latest(history)
            self._commit(state, history, latest, metas, tasks)
        return RetireOutcome(task, version, removed=removed)

    def revoke(
        self,
        task: str,
        *,
        version: int,
        payload_digest: str,
        revocation_digest: str,
        at: float | None = None,
    ) -> RevokeOutcome:
        """Apply a verified revocation of one payload: its entry goes (if kept here) and the task
        serves its newest remaining entry (the head it served before, or none), exactly like
        `rollback`; the payload is marked rolled back whether or not it was ever installed here,
        so the version policy refuses it on redelivery. Other tasks are untouched."""
        with self._locked():
            state = self.state()
            record = state.tasks.get(task, TaskRecord())
            if any(m.payload_digest == payload_digest for m in record.rolled_back):
                return RevokeOutcome(
                    task, version, removed=(), serving=record.version, already=True
                )
            metas = {n: self._load(n).meta for n in state.history}
            removed = tuple(
                n
                for n in state.history
                if metas[n].task == task and metas[n].payload_digest == payload_digest
            )
            history = tuple(n for n in state.history if n not in removed)
            mark = RolledBack(
                version=version,
                payload_digest=payload_digest,
                at=time.time() if at is None else at,
                revocation_digest=revocation_digest,
            )
            tasks = dict(state.tasks)
            tasks[task] = record.model_copy(
                update={"rolled_back": (*record.rolled_back, mark)[-MAX_ROLLED_BACK:]}
            )
            latest = state.current if state.current in history else self._latest(history)
            kept = {n: metas[n] for n in history}
            self._commit(state, history, latest, kept, tasks)
            serving = self.state().tasks[task].version
        return RevokeOutcome(task, version, removed=removed, serving=serving)

    def raise_floor(self, task: str, *, version: int, digest: str) -> None:
        """Record that `task` v`version` was installed here once (state written before format 2)."""
        with self._locked():
            state = self.state()
            old = state.tasks.get(task, TaskRecord())
            if version <= old.highest_version:
                return
            tasks = dict(state.tasks)
            tasks[task] = old.model_copy(
                update={"highest_version": version, "highest_digest": digest}
            )
            self._write_state(state.model_copy(update={"tasks": tasks}))

    def rebuild(self) -> Path | None:
        """Move an unreadable state.json aside and rebuild the record from the entries' meta.json
        (the newest entry becomes current; rolled-back marks are lost). Returns where the old file
        went, or None if the state was readable and nothing changed."""
        with self._locked():
            try:
                self.state()
                return None
            except ModelStoreError as exc:
                logger.warning("%s; rebuilding it from the stored entries", exc)
            aside = self.state_path.with_name(f"state.json.unreadable-{int(time.time())}")
            if self.state_path.exists():
                os.replace(self.state_path, aside)
            metas: dict[str, ModelMeta] = {}
            for folder in sorted(self.root.iterdir()):
                if folder.is_dir() and ENTRY_RE.match(folder.name):
                    try:
                        metas[folder.name] = self._load(folder.name).meta
                    except ModelStoreError as exc:
                        logger.warning("dropping damaged entry %s: %s", folder.name, exc)
            history = tuple(sorted(metas, key=entry_seq))
            current = history[-1] if history else None
            self._commit(StoreState(), history, current, metas)
            return aside

    def _remove_strays(self, keep: Sequence[str]) -> None:
        """Delete temp folders of interrupted saves and entries no longer in the history."""
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)


def open_store(config: AgentConfig) -> ModelStore:
    """The device's model store, with its bound on tasks (state.max_tasks)."""
    return ModelStore(config.state.dir, max_tasks=config.state.max_tasks)
