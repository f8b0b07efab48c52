"""The version policy: may this payload be installed for its task? One rule for CLI and daemon.

Compared with the task's record in the model store (agent.records.TaskRecord), never with
whichever head happens to be current, so installing another task in between changes nothing:

- the payload installed for the task now              -> AlreadyInstalledError
- a payload an operator rolled back on this device    -> refused (apply --force, or publish newer)
- a version up to one retired on this device          -> refused (a newer version teaches it anew)
- a version below the highest ever installed here     -> refused as older
- the highest version again with other content        -> refused (a version names one payload)
- anything else                                       -> install

`plada-agent apply --force` skips the policy; the daemon never does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from agent.errors import AlreadyInstalledError, TaskLimitError, TaskRejectedError
from agent.records import TaskRecord


def check_installable(
    record: TaskRecord | None,
    *,
    task: str,
    version: int,
    digest: str,
    pending_version: int | None = None,
) -> None:
    """Raise TaskRejectedError (or AlreadyInstalledError) unless the payload may be installed.

    `pending_version`: a version of the task already accepted and waiting to be installed (the
    daemon's queue); a payload must be newer than that too.
    """
    name = f"task {task!r} version {version}"
    if record is not None:
        if record.payload_digest == digest:
            raise AlreadyInstalledError(
                f"version: {name} is not newer than the installed version {record.version}: "
                "this very payload is installed"
            )
        for undone in record.rolled_back:
            if undone.payload_digest == digest:
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(undone.at))
                raise TaskRejectedError(
                    f"version: {name} was rolled back on this device at {when}; publish a "
                    "newer version, or reinstall it with `plada-agent apply --force`"
                )
        if record.retired is not None and version <= record.retired.version:
            raise TaskRejectedError(
                f"version: {name} was retired on this device (versions up to "
                f"{record.retired.version}); publish a newer version to teach the task again"
            )
        if version < record.highest_version:
            raise TaskRejectedError(
                f"version: {name} is not newer than version {record.highest_version}, "
                "installed here before"
            )
        if version == record.highest_version and digest != record.highest_digest:
            raise TaskRejectedError(
                f"version: {name} is not newer than version {record.highest_version}, installed "
                "here before with other content (a new payload needs a new version)"
            )
    if pending_version is not None and version <= pending_version:
        raise TaskRejectedError(
            f"version: {name} is not newer than version {pending_version}, already accepted "
            "and waiting to be installed"
        )


def check_capacity(records: Mapping[str, TaskRecord], *, task: str, max_tasks: int | None) -> None:
    """Raise TaskLimitError if installing `task` would hold more than `max_tasks` tasks.

    A task already installed (a new version of it) never counts twice. The policy is refuse and
    report: no installed task is ever dropped to make room; an operator retires one
    (`plada-build retire`) or raises `state.max_tasks`.
    """
    if max_tasks is None:
        return
    installed = sorted(t for t, r in records.items() if r.installed is not None)
    if task in installed or len(installed) < max_tasks:
        return
    raise TaskLimitError(
        f"capacity: task {task!r} would be task {len(installed) + 1} on this device, which holds "
        f"at most {max_tasks} (state.max_tasks; installed: {', '.join(installed)}); retire one "
        "(plada-build retire) or raise state.max_tasks, then deliver it again"
    )
