"""The README's soak table, from bench/results/soak.json, between `<!-- soak:start -->` and
`<!-- soak:end -->`."""

from __future__ import annotations

from typing import Any

from bench.soak.chaos import KINDS

START, END = "<!-- soak:start -->", "<!-- soak:end -->"
_WHAT = {
    "kill_mid_receive": "SIGKILL while receiving chunks",
    "kill_mid_training": "SIGKILL while training",
    "kill_other": "SIGKILL at a random moment",
    "broker_restart": "broker restart",
    "corrupt_image": "corrupt corpus image, repaired later",
    "junk_task": "junk on the task topic",
    "junk_chunk": "junk on the manifest topic (chunked delivery)",
}
_RECOVERY = {k: "kill" for k in KINDS if k.startswith("kill")} | {
    "broker_restart": "broker_restart",
    "corrupt_image": "corrupt_image",
}


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    versions = ", ".join(f"{t} v{v}" for t, v in result["versions_published"].items())
    lines = [
        f"{result['agents']} agent processes in {result['groups']} groups, "
        f"{result['duration_s'] / 60:.0f} minutes of chaos (seed {result['seed']}), last versions "
        f"{versions}; on {machine['nproc']} shared cores, load average "
        f"{machine['loadavg_start']} at the start and {machine['loadavg_end']} at the end "
        f"(`bench/results/soak.json`).",
        "",
        "| fault | injected | could be seen | in status and trial log | recovery median / max |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind in KINDS:
        # Per kind; runs before 2026-12 recorded one "kill" entry for the three kinds of kill.
        stats = result["recovery_s"].get(kind) or result["recovery_s"].get(_RECOVERY.get(kind, ""))
        wait = "-" if not (stats or {}).get("n") else f"{stats['median']} s / {stats['max']} s"
        if stats and kind not in result["recovery_s"] and _RECOVERY.get(kind) == "kill":
            wait += " (all kills)"
        lines.append(
            f"| {_WHAT[kind]} | {result['faults_injected'][kind]} | "
            f"{result['faults_exercised'][kind]} | {result['faults_reported'][kind]} | {wait} |"
        )
    confirmed = ", ".join(f"{k} {v}" for k, v in result["kills_confirmed_by_device"].items())
    lines += [
        "",
        f"Lost: **{result['lost']}** (devices not on the latest version at the end). Duplicated: "
        f"**{result['duplicated']}** (a payload installed twice). Inconsistent model stores: "
        f"**{len(result['inconsistent_stores'])}**. Agents that exited by themselves: "
        f"**{len(result['agent_exits'])}**. The fleet converged {result['settle_s']} s after the "
        f"chaos stopped. Kills the devices' own logs place mid-phase: {confirmed or 'none'}.",
    ]
    return "\n".join(lines)


def replace_section(readme: str, body: str) -> str:
    if START not in readme or END not in readme:
        raise ValueError(f"README has no {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{body}\n{END}{tail}"
