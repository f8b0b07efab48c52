"""The trial's staged rollouts (issue 19, item 5): one promoted, one aborted, over the same links
and agents, with ``plada-build rollout``'s own code (builder.fleet.rollout, run from the broker
namespace by tools.trial.rollout_task).

The fleet is split into a canary group and the rest (tools.trial.fleet_plan: the canary holds
every link profile and device class).

- ``promote``: the task again as the next version (the same selection, signed again) goes to the
  canary; every canary device's probe accuracy clears the threshold, so it is promoted to the rest.
- ``abort``: a deliberately bad build of the task: the same selection with every label moved to
  the next class (what a class list out of order or a mismatched label file does to a build), a
  head that really learns the wrong classes. The canary trains it, reports its probe accuracy, fails
  the threshold; the rollout revokes the version (signed), the canary rolls back to the head it
  served before, and the rest never receive it (their agents' trial logs hold no message of it;
  the kernel counters show what crossed their links meanwhile).

The threshold: ``min_fraction`` (0.9, the product's default) of a reference accuracy per device
class. The reference is what the class's devices measured in this trial's PLADA stage on the same
probe images (the lowest of them): the builder's simulation is computed on the whole test split,
while a trial device probes a small subset, so the same head can land a few images either way of
it. Without a PLADA stage the kit's builder simulation is used.

Per device: the kernel's counters over the stage, the agent's own count of the payload, its
verdict, reported and required accuracy, the version serving at the end and what Home Assistant
shows for its update entity (from the retained discovery config and state on the trial broker).
The rollout record is saved in the stage folder and embedded in the stage report.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from builder.fleet.rollout_record import DeviceOutcome, HomeAssistantView, RolloutRecord
from plada.payload import encode_payload, inspect_payload, payload_digest
from plada.signing import SigningKey, load_private_key
from tools.trial.clients import REPO
from tools.trial.counters import LinkCounters
from tools.trial.errors import TrialRunError
from tools.trial.fleet_device import FleetDevice
from tools.trial.fleet_plan import CANARY_GROUP, REST_GROUP
from tools.trial.kit import resigned
from tools.trial.network import BROKER
from tools.trial.report_model import DeviceRow, StageReport
from tools.trial.scrape import METRICS_FIGURES, scrape_figures
from tools.trial.stages import TrialContext, Window, in_parallel, link_fields, min_time_s

Expected = Literal["promoted", "aborted"]
MIN_FRACTION = 0.9


def mislabelled(data: bytes, *, version: int, key: SigningKey) -> bytes:
    """The payload's selection with every label moved to the next class, signed as ``version``."""
    payload = inspect_payload(data, trusted_keys={}).payload
    labels = (np.asarray(payload.labels) + 1) % payload.num_classes
    bad = replace(payload, version=version, labels=labels.astype(np.int64))
    return encode_payload(bad, signing_key=key)


def next_version(ctx: TrialContext) -> int:
    """One above every version a device reports (an agent refuses an older one) and every version
    an earlier rollout stage used (a revoked one is refused for good, and its result withdrawn)."""
    seen = [int((d.result(ctx.kit.task) or {}).get("version") or 1) for d in ctx.devices]
    version = max([*seen, int(ctx.shared.get("rollout_version", 0))]) + 1
    ctx.shared["rollout_version"] = version
    return version


def reference_accuracy(ctx: TrialContext) -> tuple[dict[str, float], str]:
    """Device class -> the accuracy the threshold's fraction applies to, and where it is from."""
    measured: Mapping[str, float | None] = ctx.shared.get("plada_accuracy", {})
    per_class: dict[str, list[float]] = {}
    for device in ctx.devices:
        value = measured.get(device.name)
        if value is not None:
            per_class.setdefault(device.plan.device_class, []).append(value)
    if per_class:
        return {c: min(v) for c, v in per_class.items()}, "the PLADA stage's lowest per class"
    simulated: dict[str, Any] = ctx.kit.describe().get("builder_simulated") or {}
    if simulated:
        return {c: float(d["accuracy"]) for c, d in simulated.items()}, "the builder's simulation"
    raise TrialRunError("a rollout stage needs the plada stage before it (or a kit simulation)")


def ha_text(view: HomeAssistantView | None) -> str:
    """One line of what Home Assistant shows for the entity."""
    if view is None or not view.present:
        return "no entity"
    state = {"on": "update available", "off": "up to date", None: "unknown"}[view.state]
    online = {True: "online", False: "offline", None: "availability unknown"}[view.available]
    parts = [state, f"installed {view.installed_version or '-'}"]
    parts.append(f"latest {view.latest_version or '-'}")
    if view.release_summary:
        parts.append(f"'{view.release_summary}'")
    return ", ".join([*parts, online])


class RolloutStage:
    def __init__(self, expected: Expected, *, min_fraction: float = MIN_FRACTION) -> None:
        self.expected = expected
        self.min_fraction = min_fraction
        self.kind = "promote" if expected == "promoted" else "abort"
        self.name = (
            "staged rollout, promoted"
            if expected == "promoted"
            else "staged rollout, aborted (mislabelled build)"
        )

    def _payload(self, ctx: TrialContext, version: int) -> Path:
        base = ctx.kit.payload_path.read_bytes()
        key = load_private_key(ctx.kit.signing_key_path)
        if self.expected == "promoted":
            data = resigned(base, version=version, key=key)
        else:
            data = mislabelled(base, version=version, key=key)
        folder = ctx.folder / "rollout"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ctx.kit.task}-v{version}-{self.kind}.plada"
        path.write_bytes(data)
        return path

    def _rollout(
        self, ctx: TrialContext, payload: Path, reference: dict[str, float], record: Path
    ) -> RolloutRecord:
        argv = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "tools.trial.rollout_task"]
        argv += [str(payload), "--url", ctx.broker.local_url]
        argv += ["--canary", CANARY_GROUP, "--rest", REST_GROUP]
        argv += ["--signing-key", str(ctx.kit.signing_key_path)]
        argv += ["--trusted-key", str(ctx.kit.public_key_path)]
        argv += ["--reference", json.dumps(reference), "--min-fraction", str(self.min_fraction)]
        argv += ["--timeout", str(ctx.timeout_s), "--record", str(record)]
        # the rollout waits up to its timeout for the canary, then again for the rest or rollback
        out = ctx.net.run(BROKER, argv, timeout_s=3 * ctx.timeout_s + 120)
        ctx.log(f"rollout: {json.loads(out.strip().splitlines()[-1])['reason']}")
        return RolloutRecord.load(record)

    def run(self, ctx: TrialContext) -> StageReport:
        version = next_version(ctx)
        path = self._payload(ctx, version)
        data = path.read_bytes()
        digest = payload_digest(data)
        reference, source = reference_accuracy(ctx)
        window = Window(ctx)
        record = self._rollout(ctx, path, reference, ctx.folder / f"rollout-{self.kind}.json")
        spent, broker_retrans = window.close()
        outcomes = {d.device_id: d for d in record.devices}
        rows = in_parallel(
            ctx.devices,
            lambda d: _row(ctx, d, spent[d.name], outcomes.get(d.name), digest, len(data)),
        )
        what = (
            "the same selection signed again"
            if self.expected == "promoted"
            else "the same selection with every label moved to the next class (a head that "
            "learns the wrong classes)"
        )
        canary = [d.device_id for d in record.devices if d.role == "canary"]
        refs = ", ".join(f"{c} {100 * v:.1f} %" for c, v in sorted(reference.items()))
        return StageReport(
            name=self.name,
            kind=self.kind,
            description=(
                f"task {ctx.kit.task} v{version}: {len(data)} bytes, {what}; canary "
                f"{', '.join(canary)} (group {CANARY_GROUP}), then the rest (group {REST_GROUP}); "
                f"threshold {100 * self.min_fraction:.0f} % of {source} ({refs}); outcome "
                f"{record.outcome} (expected {self.expected})"
            ),
            started_at=window.started_at,
            seconds=round(time.time() - window.started_at, 2),
            timeout_s=ctx.timeout_s,
            rows=rows,
            broker_tcp_retrans_segs=broker_retrans,
            notes=[
                "payload bytes count only devices whose group was sent the payload; delivered: "
                "the agent's trial log holds the payload's messages (a rest device of an aborted "
                "rollout must not); wire down: every frame broker -> device in the stage, "
                "including a revocation and the restored retained copy on an abort",
            ],
            rollout=record,
        )


def _row(
    ctx: TrialContext,
    device: FleetDevice,
    spent: LinkCounters,
    outcome: DeviceOutcome | None,
    digest: str,
    size: int,
) -> DeviceRow:
    summary = device.task_summary(digest)
    got = summary is not None and summary.messages > 0
    sent = outcome is not None and outcome.published_at is not None
    framing = summary.overhead_bytes if summary else 0
    last = device.last_byte_at(digest)
    since = outcome.published_at if outcome is not None else None
    figures = scrape_figures(ctx.net, device.name) or {}
    verdict = (outcome.verdict if outcome else None) or "not sent"
    required = outcome.required_accuracy if outcome else None
    serving = outcome.installed_version if outcome else None
    role = f"{outcome.role} ({outcome.group})" if outcome else "not in the rollout"
    answered = outcome.answered_at if outcome else None
    return DeviceRow(
        device=device.name,
        device_class=device.plan.device_class,
        profile=device.plan.profile.name,
        delivered=got,
        payload_bytes=size if sent else 0,
        framing_bytes=framing,
        device_counted_bytes=summary.payload_bytes if summary else None,
        **link_fields(spent),
        time_to_ready_s=None if answered is None or since is None else round(answered - since, 2),
        device_time_to_model_s=outcome.time_to_model_s if outcome else None,
        received_s=None if last is None or since is None else round(last - since, 2),
        min_time_s=min_time_s(device, size + framing) if sent else None,
        accuracy=outcome.reported_accuracy if outcome else None,
        accuracy_note=f"verdict {verdict}"
        + ("" if required is None else f", required {100 * required:.1f} %"),
        scraped={k: v for k, v in figures.items() if k in METRICS_FIGURES},
        event=f"{role}: {verdict}; serving "
        + ("none" if serving is None else f"v{serving}")
        + f"; Home Assistant: {ha_text(outcome.home_assistant if outcome else None)}",
        messages_received=summary.messages if summary else None,
    )
