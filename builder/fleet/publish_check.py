"""What `plada-build publish` checks before it sends anything.

A retained task message is what every device of the group receives when it joins, so publishing
a payload no device accepts (random bytes, a report.json, unsigned, badly signed, expired) or an
older version than the one retained would replace the real task for every late device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

from builder.errors import PublishRefusedError
from plada.chunks import Reassembler
from plada.errors import PayloadError
from plada.payload import PayloadInfo, SignatureStatus, inspect_payload
from plada.revocation import RevocationInfo, inspect_revocation
from plada.tombstone import TombstoneInfo, inspect_tombstone
from plada.topics import TopicKind, TopicScheme

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def check_publishable(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None
) -> PayloadInfo:
    """Refuse (PublishRefusedError) what no device would accept; returns what the payload is."""
    try:
        info = inspect_payload(data, trusted_keys=trusted_keys or {})
    except PayloadError as exc:
        raise PublishRefusedError(f"not a task payload: {type(exc).__name__}: {exc}") from exc
    if info.signature == "unsigned":
        raise PublishRefusedError("the payload is unsigned: devices refuse it")
    if trusted_keys and info.signature != "valid":
        raise PublishRefusedError(
            f"signature {info.signature} under the --trusted-key(s) (key id {info.key_id})"
        )
    if info.expired:
        raise PublishRefusedError(
            f"the payload expired at {info.payload.provenance.expires_at}: devices refuse it"
        )
    return info


def retained_task(retained: Mapping[str, bytes], topics: TopicScheme) -> PayloadInfo | None:
    """The task payload retained for a group (whole, or reassembled from its chunks), if any
    decodes; junk under the task topics counts as nothing retained."""
    whole = [b for t, b in retained.items() if b and _kind(topics, t) is TopicKind.TASK]
    if not whole:
        reasm = Reassembler()
        for topic, body in sorted(retained.items()):
            kind = _kind(topics, topic)
            try:
                if body and kind is TopicKind.MANIFEST:
                    reasm.add_manifest(body)
                elif body and kind is TopicKind.CHUNK:
                    reasm.add_chunk(body)
            except PayloadError:
                continue
        try:
            whole = [reasm.payload()] if reasm.is_complete() else []
        except PayloadError:
            whole = []
    for body in whole:
        try:
            return inspect_payload(body, trusted_keys={})
        except PayloadError:
            continue
    return None


class _SignedInfo(Protocol):
    @property
    def signature(self) -> SignatureStatus: ...

    @property
    def key_id(self) -> str | None: ...


InfoT = TypeVar("InfoT", bound=_SignedInfo)


def _check_order(inspect: Callable[[], InfoT], *, what: str, checked: bool) -> InfoT:
    """The one publish check of a signed order (retirement, revocation): it must decode, be
    signed, and verify when keys were given (`checked`); `what` names it in the refusal."""
    try:
        info = inspect()
    except PayloadError as exc:
        raise PublishRefusedError(f"not a {what}: {type(exc).__name__}: {exc}") from exc
    if info.signature == "unsigned":
        raise PublishRefusedError(f"the {what} is unsigned: devices refuse it")
    if checked and info.signature != "valid":
        raise PublishRefusedError(
            f"{what} signature {info.signature} under the --trusted-key(s) (key id {info.key_id})"
        )
    return info


def _retained_order(
    retained: Mapping[str, bytes],
    topics: TopicScheme,
    kind: TopicKind,
    decode: Callable[[bytes], InfoT],
) -> InfoT | None:
    """The first retained message on a `kind` topic that `decode` decodes (signature unchecked:
    what matters here is what the group's devices were told)."""
    for topic, body in retained.items():
        if body and _kind(topics, topic) is kind:
            try:
                return decode(body)
            except PayloadError:
                continue
    return None


def _kind(topics: TopicScheme, topic: str) -> TopicKind | None:
    parsed = topics.parse(topic)
    return parsed.kind if parsed else None


def check_not_older(new: PayloadInfo, old: PayloadInfo | None, *, force: bool) -> None:
    if old is None or force or new.payload.task != old.payload.task or new.digest == old.digest:
        return
    task, version, retained = new.payload.task, new.payload.version, old.payload.version
    if version < retained or version == retained:
        what = "older than" if version < retained else "the same version as, with other content,"
        raise PublishRefusedError(
            f"{task} v{version} is {what} the {task} v{retained} retained for this group: "
            "devices would refuse it and later ones would never get the retained task "
            "(--force publishes it anyway)"
        )


def check_retirement(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None
) -> TombstoneInfo:
    """Refuse (PublishRefusedError) a retirement no device would accept: not a tombstone,
    unsigned, or not verifying under the given keys."""
    return _check_order(
        lambda: inspect_tombstone(data, trusted_keys=trusted_keys or {}),
        what="retirement",
        checked=bool(trusted_keys),
    )


def retained_tombstone(retained: Mapping[str, bytes], topics: TopicScheme) -> TombstoneInfo | None:
    """The retirement retained among a task's topics, if one decodes."""
    return _retained_order(
        retained, topics, TopicKind.RETIRED, partial(inspect_tombstone, trusted_keys={})
    )


def check_not_retired(new: PayloadInfo, retired: TombstoneInfo | None, *, force: bool) -> None:
    """A version the group's retained retirement covers would be refused by every device."""
    if retired is None or force or retired.tombstone.task != new.payload.task:
        return
    if new.payload.version <= retired.tombstone.version:
        raise PublishRefusedError(
            f"{new.payload.task} v{new.payload.version} is retired in this group (versions up "
            f"to {retired.tombstone.version}): devices would refuse it; publish a newer "
            "version (--force publishes it anyway)"
        )


def check_revocation(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None
) -> RevocationInfo:
    """Refuse (PublishRefusedError) a revocation no device would accept: not a revocation,
    unsigned, or not verifying under the given keys (a forged one must not clear a group's
    retained task either)."""
    return _check_order(
        lambda: inspect_revocation(data, trusted_keys=trusted_keys or {}),
        what="revocation",
        checked=bool(trusted_keys),
    )


def retained_revocation(
    retained: Mapping[str, bytes], topics: TopicScheme
) -> RevocationInfo | None:
    """The revocation retained among a task's topics, if one decodes."""
    return _retained_order(
        retained, topics, TopicKind.REVOKED, partial(inspect_revocation, trusted_keys={})
    )


def check_not_revoked(new: PayloadInfo, revoked: RevocationInfo | None, *, force: bool) -> None:
    """The very payload the group's retained revocation undid would be refused by every device
    that saw the revocation."""
    if revoked is None or force or revoked.revocation.payload_id != new.digest:
        return
    raise PublishRefusedError(
        f"{new.payload.task} v{new.payload.version} was revoked in this group (a staged "
        "rollout's canary failed): devices refuse it; publish a newer version (--force "
        "publishes it anyway)"
    )
