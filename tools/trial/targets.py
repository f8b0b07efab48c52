"""Issue 19's targets, checked on a trial report's rows.

- On the LoRa profile (9.6 kbit/s, 5 % loss) the task reaches every device, and the downlink bytes
  on the wire per device stay within 1.5x the payload plus its MQTT framing. The same two figures
  are given for the task as images and as weights (informative: they are the alternatives).
- After a link drop in the middle of a chunked update no task message is sent again, and a device
  that was offline during the publish gets the update when it comes back.
- A staged rollout is promoted when every canary device clears the threshold and then reaches the
  rest; one of a mislabelled build is aborted, the canary serves the version before it again, and
  the rest never receive it (their agents' trial logs hold no message of it).
- The timed part of the trial (links up to links down) takes under 10 minutes.
"""

from __future__ import annotations

from tools.trial.report_model import StageReport, TargetCheck

THIN_PROFILE = "lora"
WIRE_LIMIT = 1.5
TIMED_LIMIT_S = 600.0


def stage_checks(stage: StageReport, *, profile: str = THIN_PROFILE) -> list[TargetCheck]:
    rows = [r for r in stage.rows if r.profile == profile]
    if not rows:
        return []
    reached = sum(r.delivered for r in rows)
    worst = max(r.wire_to_payload for r in rows)
    sizes = sorted({r.payload_bytes for r in rows})
    size = f"{sizes[0]} B" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]} B"
    return [
        TargetCheck(
            name=f"{profile}: {stage.kind} ({size}) reaches every device",
            value=float(reached),
            limit=float(len(rows)),
            met=reached == len(rows),
            detail=f"{reached} of {len(rows)} within {stage.timeout_s:g} s",
        ),
        TargetCheck(
            name=f"{profile}: {stage.kind} wire bytes down <= {WIRE_LIMIT}x payload + MQTT framing",
            value=round(worst, 3),
            limit=WIRE_LIMIT,
            met=worst <= WIRE_LIMIT and reached == len(rows),
            detail="worst device; "
            + ", ".join(f"{r.device} {r.wire_to_payload:.2f}x" for r in rows)
            + ("" if reached == len(rows) else " (counted until the stage's time limit)"),
        ),
    ]


def drop_checks(stage: StageReport) -> list[TargetCheck]:
    """Nothing the device already held is sent again after a drop; the offline device catches up."""
    checks = []
    for row in stage.rows:
        if not row.event or row.messages_needed is None:
            continue
        again = (row.messages_received or 0) - row.messages_needed
        checks.append(
            TargetCheck(
                name=f"{row.device} ({row.event}): no task message sent again, update installed",
                value=float(again),
                limit=0.0,
                met=row.delivered and again == 0,
                detail=f"{row.messages_received} of {row.messages_needed} messages received, "
                f"{'installed' if row.delivered else 'not installed'}",
            )
        )
    return checks


ROLLOUT_KINDS = {"promote": "promoted", "abort": "aborted"}


def rollout_checks(stage: StageReport) -> list[TargetCheck]:
    record = stage.rollout
    expected = ROLLOUT_KINDS[stage.kind]
    if record is None:
        missing = TargetCheck(
            name=f"staged rollout {expected}", value=None, limit=None, met=False, detail="no record"
        )
        return [missing]
    canary = [d for d in record.devices if d.role == "canary"]
    rest = [d for d in record.devices if d.role == "rest"]
    got = {r.device for r in stage.rows if r.delivered}
    if expected == "promoted":
        ok = [d for d in record.devices if d.verdict == "pass"]
        serving = [d for d in ok if d.installed_version == record.version]
        what = f"{len(serving)} of {len(record.devices)} devices passed and serve v{record.version}"
        met = record.outcome == "promoted" and len(serving) == len(record.devices) > len(canary)
    else:
        back = [d for d in canary if d.installed_version != record.version]
        leaked = sorted(d.device_id for d in rest if d.device_id in got)
        what = (
            f"{len(back)} of {len(canary)} canary devices no longer serve v{record.version}; "
            f"rest devices that received it: {', '.join(leaked) or 'none'}"
        )
        met = record.outcome == "aborted" and len(back) == len(canary) and not leaked and rest != []
    return [
        TargetCheck(
            name=f"staged rollout {expected}",
            value=float(met),
            limit=1.0,
            met=met,
            detail=f"{record.outcome}: {record.reason}; {what}",
        )
    ]


def check_targets(stages: list[StageReport], *, timed_s: float, devices: int) -> list[TargetCheck]:
    plain = [s for s in stages if s.kind != "drop" and s.kind not in ROLLOUT_KINDS]
    checks = [c for stage in plain for c in stage_checks(stage)]
    checks += [c for stage in stages if stage.kind == "drop" for c in drop_checks(stage)]
    checks += [c for stage in stages if stage.kind in ROLLOUT_KINDS for c in rollout_checks(stage)]
    checks.append(
        TargetCheck(
            name=f"timed part under {TIMED_LIMIT_S / 60:g} minutes",
            value=round(timed_s, 1),
            limit=TIMED_LIMIT_S,
            met=timed_s < TIMED_LIMIT_S,
            detail=f"{devices} devices, links up to links down",
        )
    )
    return checks
