"""Scrape an agent's Prometheus endpoint from inside its device namespace.

    ip netns exec <device ns> python -m tools.trial.scrape http://127.0.0.1:9464/metrics

prints the samples as one JSON list (``name``, ``labels``, ``value``), or exits 1 when nothing
answers. Each device namespace has its own loopback, so every agent listens on the same
127.0.0.1 port and the scrape never crosses (or adds bytes to) the device's emulated link: a
field deployment would scrape over a management network, not the thin link.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, ValidationError

from tools.trial.clients import REPO
from tools.trial.errors import KernelError, TrialRunError
from tools.trial.fleet_device import METRICS_URL
from tools.trial.network import TrialNetwork


class Sample(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    labels: dict[str, str]
    value: float


def fetch(url: str, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - own loopback
        text = response.read().decode("utf-8")
    return [
        {"name": s.name, "labels": dict(s.labels), "value": float(s.value)}
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def scrape(net: TrialNetwork, device: str, url: str) -> list[Sample] | None:
    """The device's samples, or None when its endpoint does not answer (yet)."""
    argv = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "tools.trial.scrape", url]
    try:
        out = net.run(device, argv, timeout_s=60)
    except KernelError:  # a non-zero exit: the endpoint did not answer
        return None
    try:
        return [Sample.model_validate(item) for item in json.loads(out)]
    except (ValueError, ValidationError) as exc:
        raise TrialRunError(f"{device}: scrape of {url} printed no sample list: {exc}") from exc


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sum of the samples of one metric whose labels include ``labels`` (None: no sample)."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


# What a trial row shows from each scrape: figure -> (metric, labels)
_FIGURES: dict[str, tuple[str, dict[str, str]]] = {
    "received_bytes": ("plada_agent_received_bytes_total", {}),
    "received_overhead_bytes": ("plada_agent_received_overhead_bytes_total", {}),
    "received_messages": ("plada_agent_received_messages_total", {}),
    "link_connected": ("plada_agent_link_connected", {}),
    "link_disconnects": ("plada_agent_link_disconnects_total", {}),
    "tasks_installed": ("plada_agent_tasks_installed", {}),
    "train_seconds": ("plada_agent_train_seconds", {}),
    "faults": ("plada_agent_faults_total", {}),
}
METRICS_FIGURES = tuple(_FIGURES)


def figures(samples: list[Sample]) -> dict[str, float]:
    """The trial's figures from one scrape (a metric with no sample yet counts 0)."""
    return {
        name: value(samples, metric, **labels) or 0.0 for name, (metric, labels) in _FIGURES.items()
    }


def scrape_figures(net: TrialNetwork, device: str) -> dict[str, float] | None:
    samples = scrape(net, device, METRICS_URL)
    return None if samples is None else figures(samples)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.trial.scrape URL", file=sys.stderr)
        return 64
    try:
        samples = fetch(args[0])
    except OSError as exc:
        print(f"scrape {args[0]}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
