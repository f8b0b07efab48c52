"""The one place that says whose fault a failure is, and what the device does about it.

A *payload fault* is the payload's own: a bad signature, another corpus, out-of-range data, an
empty selection, a version the policy refuses. The device refuses that payload once, for good,
and reports why. A *device fault* is the device's: a corrupt corpus image, a bad cache block, a
full disk, too little memory, a missing encoder, an agent killed mid-training. The device keeps
serving the model it has, reports the cause, retries with back-off and installs the task once
the cause is gone. Anything not known to be the payload's is treated as the device's: retrying a
good payload costs a little time, refusing it for good loses the task.
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass
from enum import Enum

from agent.errors import (
    ConfigError,
    EncoderBackendError,
    FeatureCacheError,
    ModelStoreError,
    TaskLimitError,
    TaskRejectedError,
    TaskTopicError,
    TrainerError,
)
from plada.errors import CorpusError, HeadTrainingError, PayloadError

INTERRUPTED = "AgentInterrupted"  # code of an attempt the process did not survive


class FaultClass(str, Enum):
    PAYLOAD = "payload"
    DEVICE = "device"


@dataclass(frozen=True)
class Fault:
    fault_class: FaultClass
    code: str  # the exception class name, or INTERRUPTED
    message: str
    hint: str  # what the operator can do
    expected: bool = True  # False: no rule knew it (a bug, most likely): log the traceback
    remember: bool = True  # a payload fault: refuse this payload on every later delivery too

    @property
    def is_payload(self) -> bool:
        return self.fault_class is FaultClass.PAYLOAD


_DEVICE_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (
        CorpusError,
        "the local corpus is damaged or missing: run `plada corpus verify` on corpus.path and "
        "restore what it names; the task installs by itself once the corpus reads cleanly",
    ),
    (
        FeatureCacheError,
        "a feature-cache block is damaged: it is recomputed on the next attempt; if this "
        "persists, delete cache.dir",
    ),
    (EncoderBackendError, "the encoder file or its sidecar is damaged: reinstall encoder.file"),
    (TrainerError, "the head trainer failed: check head.backend and the log"),
    (ModelStoreError, "the model store under state.dir/models is damaged: see the log"),
    (ConfigError, "a file the config names is missing or unreadable: fix it, nothing else to do"),
    (HeadTrainingError, "training got unusable features (see the log): retried with back-off"),
    (MemoryError, "out of memory: lower encoder.batch_size or the service's MemoryMax"),
)


def classify(exc: BaseException) -> Fault:
    """The fault an exception raised while receiving or installing a payload stands for."""
    message = str(exc) or type(exc).__name__
    code = type(exc).__name__
    if isinstance(exc, TaskLimitError):
        # Refused and reported, but not for good: once a task is retired (or the bound raised)
        # the same retained payload is taken at its next delivery.
        return Fault(
            FaultClass.PAYLOAD,
            code,
            message,
            "retire a task (plada-build retire) or raise state.max_tasks; the task is taken at "
            "its next delivery (reconnect or publish)",
            remember=False,
        )
    if isinstance(exc, TaskTopicError):
        # The placement is wrong, not the payload: refusing it for good would let a copy on a
        # wrong topic shut out the real one.
        return Fault(
            FaultClass.PAYLOAD,
            code,
            message,
            "publish it with `plada-build publish` (each task on its own topics)",
            remember=False,
        )
    if isinstance(exc, PayloadError | TaskRejectedError):
        return Fault(FaultClass.PAYLOAD, code, message, "refused for good; publish a fixed payload")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Fault(
            FaultClass.DEVICE, code, message, "the disk is full: free space under state.dir"
        )
    for cause in _causes(exc):  # a ConfigError raised from a CorpusError gets the corpus hint
        for kind, hint in _DEVICE_HINTS:
            if isinstance(cause, kind):
                return Fault(FaultClass.DEVICE, code, message, hint)
    return Fault(
        FaultClass.DEVICE,
        code,
        message,
        "unexpected error (the log has the traceback); retried",
        expected=False,
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain[::-1]  # the root cause first: it says most about what to do


def interrupted(task: str, version: int, attempts: int) -> Fault:
    return Fault(
        FaultClass.DEVICE,
        INTERRUPTED,
        f"the agent stopped while installing {task} v{version} (attempt {attempts}: killed, out "
        "of memory or power loss)",
        "retried; if it happens again and again, look for OOM kills in the journal",
    )


def retry_delay_s(failures: int, *, min_s: float, max_s: float, key: str) -> float:
    """Back-off after the `failures`-th failure: min_s doubling up to max_s, +-20 % jitter.

    The jitter is seeded by `key` (device and payload), so a fleet that failed together does
    not retry together, and a test sees the same delays every run.
    """
    if failures <= 0:
        return 0.0
    base = min(max_s, min_s * 2.0 ** min(failures - 1, 30))
    jitter = random.Random(f"{key}:{failures}").uniform(0.8, 1.2)
    return min(max_s, base * jitter)
