"""The daemon's own bookkeeping (``<state>/fleet/state.json``), typed and validated on load.

What is *installed* is not here: the model store's record is the one source for that
(agent.models). This file keeps what only the daemon needs: the tasks accepted but not yet
installed (one per task, each with its attempts and the device fault that deferred it), the
payloads refused for good, and the last error shown in status.

An unreadable or invalid file is moved aside (``state.json.unreadable-<unix time>``) and the
state starts empty: installed tasks come from the model store, and accepted payloads are
re-offered from their files under ``pending/`` (agent.installer).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.status import LastError
from plada.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

STATE_FORMAT: Literal[2] = 2
MAX_REJECTED_REMEMBERED = 64
_DIGEST = r"^[0-9a-f]{64}$"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PendingTask(_Record):
    """An accepted payload waiting to be installed; its bytes are in ``pending/<id>.bin``."""

    payload_id: str = Field(pattern=_DIGEST)
    task: str
    version: int = Field(ge=1)
    first_byte_at: float = Field(description="unix time its first byte arrived")
    attempts: int = Field(default=0, ge=0, description="installs started")
    failures: int = Field(default=0, ge=0, description="device faults and interruptions so far")
    next_attempt_at: float = Field(default=0.0, description="unix time of the next attempt")
    in_progress: bool = Field(
        default=False,
        description="an attempt started and has not ended: found at start-up, "
        "it means the process died during the attempt",
    )
    last_fault: LastError | None = None


class FleetState(_Record):
    format: Literal[2] = STATE_FORMAT
    pending: dict[str, PendingTask] = Field(
        default_factory=dict, description="task -> the newest accepted payload not installed"
    )
    rejected: list[str] = Field(
        default_factory=list, description="payload ids refused for good, newest last"
    )
    last_error: LastError | None = None

    @classmethod
    def load(cls, path: Path) -> FleetState:
        """The state at `path` (see load_state: an unreadable file is moved aside)."""
        return load_state(path).state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, self.model_dump_json(indent=1).encode("utf-8"))

    def reject(self, payload_id: str) -> None:
        if payload_id not in self.rejected:
            self.rejected = [*self.rejected, payload_id][-MAX_REJECTED_REMEMBERED:]

    def pending_by_id(self, payload_id: str) -> PendingTask | None:
        return next((p for p in self.pending.values() if p.payload_id == payload_id), None)


class LoadedState(BaseModel):
    """FleetState.load's result: the state, where an unreadable file went, and the version
    floors a format-1 file held (to be handed to the model store)."""

    state: FleetState
    moved_aside: Path | None = None
    problem: str | None = None
    floors: dict[str, tuple[int, str]] = Field(default_factory=dict)
    legacy_pending: dict[str, Any] | None = None


def load_state(path: Path) -> LoadedState:
    """Read the state file; migrate format 1; move an unreadable one aside and start empty."""
    if not path.exists():
        return LoadedState(state=FleetState())
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("top level is not an object")
        if "format" not in raw:
            return _migrate_v1(raw)
        return LoadedState(state=FleetState.model_validate(raw))
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        problem = f"{path}: fleet state unreadable ({_describe(exc)})"
    aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
    os.replace(path, aside)
    logger.warning("%s; moved to %s and rebuilt from the model store", problem, aside)
    return LoadedState(state=FleetState(), moved_aside=aside, problem=problem)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
    return str(exc)


def _migrate_v1(raw: dict[str, Any]) -> LoadedState:
    """Format 1 kept `installed` and `versions` here too; they move to the model store."""
    floors = {
        str(task): (int(v["version"]), str(v["payload_id"]))
        for task, v in (raw.get("versions") or {}).items()
    }
    last = raw.get("last_error")
    state = FleetState(
        rejected=[str(r) for r in raw.get("rejected") or []][-MAX_REJECTED_REMEMBERED:],
        last_error=LastError(**last) if isinstance(last, dict) else None,
    )
    return LoadedState(state=state, floors=floors, legacy_pending=raw.get("pending"))
