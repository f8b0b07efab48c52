"""Issue 19's targets, checked on a trial report's rows.

- On the LoRa profile (9.6 kbit/s, 5 % loss) the task reaches every device, and the downlink bytes
  on the wire per device stay within 1.5x the payload plus its MQTT framing. The same two figures
  are given for the task as images and as weights (informative: they are the alternatives).
- After a link drop in the middle of a chunked update no task message is sent again, and a device
  that was offline during the publish gets the update when it comes back.
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


def check_targets(stages: list[StageReport], *, timed_s: float, devices: int) -> list[TargetCheck]:
    checks = [c for stage in stages if stage.kind != "drop" for c in stage_checks(stage)]
    checks += [c for stage in stages if stage.kind == "drop" for c in drop_checks(stage)]
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
