"""Markdown tables from bench/results/trial_links.json and trial_resume.json (for the README).

python -m tools.trial.render [--links FILE] [--resume FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path("bench/results")


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def _rtt(stats: dict[str, Any] | None) -> str:
    return "-" if not stats else f"{_ms(stats['median_ms'])} ms (max {_ms(stats['max_ms'])})"


def _rate(direction: dict[str, Any], configured: float | None) -> str:
    wire = direction["wire_kbit"]
    if configured is None:
        return f"{wire / 1000:.0f} Mbit/s (not shaped)"
    return f"{wire:.1f} ({direction['wire_to_rate']:.2f}x), goodput {direction['goodput_kbit']:.1f}"


def links_table(report: dict[str, Any]) -> str:
    rows = [
        "| profile | down kbit/s on the wire (x rate) | up kbit/s on the wire | loss down / up "
        "(nft, packets) | RTT idle | RTT loaded down / up | drop |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in report["profiles"].items():
        conf = p["configured"]
        loss = p["loss_measured"]
        lost = " / ".join(
            f"{loss[d]['fraction'] * 100:.1f} % of {loss[d]['wire_packets']}"
            for d in ("down", "up")
        )
        drop = "-"
        if "drop" in p:
            d = p["drop"]
            survived = "TCP survived" if d["tcp_reconnects"] == 0 else "reconnected"
            silent = d["ping_longest_silence_s"]
            drop = f"{d['drop_s']:.1f} s down, ping silent {silent:.1f} s, {survived}"
        rows.append(
            f"| {name} | {_rate(p['down'], conf['down']['rate_kbit'])} | "
            f"{_rate(p['up'], conf['up']['rate_kbit'])} | {lost} | "
            f"{p['rtt_idle_ms']['median_ms']:.2f} ms | {_rtt(p['down']['rtt_loaded_ms'])} / "
            f"{_rtt(p['up']['rtt_loaded_ms'])} | {drop} |"
        )
    return "\n".join(rows)


def resume_table(report: dict[str, Any]) -> str:
    rows = [
        "| device | MQTT | scenario | messages needed | broker sent | held at drop | held sent "
        "again | device got duplicates | wire down / needed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["scenarios"]:
        m = s["summary"]
        rows.append(
            f"| {m['device']} | {m['mqtt']} | {m['scenario']} | {m['messages_needed']} | "
            f"{m['broker_sends']} | {m['held_at_drop']} | {m['held_sent_again']} | "
            f"{m['device_duplicates']} | {m['wire_to_needed']:.2f}x |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=Path, default=RESULTS / "trial_links.json")
    parser.add_argument("--resume", type=Path, default=RESULTS / "trial_resume.json")
    args = parser.parse_args(argv)
    for path, render in ((args.links, links_table), (args.resume, resume_table)):
        if path.exists():
            print(render(json.loads(path.read_text(encoding="utf-8"))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
