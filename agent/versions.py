"""The version policy: may this payload be installed for its task? One rule for CLI and daemon.

Compared with the task's record in the model store (agent.records.TaskRecord), never with
whichever head happens to be current, so installing another task in between changes nothing:

- the payload installed for the task now              -> AlreadyInstalledError
- a payload an operator rolled back on this device    -> refused (apply --force, or publish newer)
- a version below the highest ever installed here     -> refused as older
- the highest version again with other content        -> refused (a version names one payload)
- anything else                                       -> install

`plada-agent apply --force` skips the policy; the daemon never does.
"""

from __future__ import annotations

import time

from agent.errors import AlreadyInstalledError, TaskRejectedError
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
