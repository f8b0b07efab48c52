"""A real mosquitto inside a trial's broker namespace.

It listens on every address of that namespace (the broker end of each device's veth, and the
namespace's own loopback for clients run there, such as the builder publishing a task); nothing
outside the trial can reach it. ``verbose`` logs every MQTT packet (``log_type all``): the
"Sending PUBLISH to <client> (d0, q1, r1, m3, '<topic>', ... (N bytes))" lines are how a trial
sees what the broker sent to whom, retained re-sends included.
"""

from __future__ import annotations

import getpass
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tools.trial.errors import TrialStateError
from tools.trial.network import BROKER, TrialNetwork

DEFAULT_PORT = 1883
_SENT = re.compile(r"Sending PUBLISH to (\S+) \(d(\d), q(\d), r(\d), m(\d+), '([^']*)'")


@dataclass(frozen=True)
class SentPublish:
    """One PUBLISH the broker sent, from its log."""

    client_id: str
    dup: bool
    qos: int
    retain: bool
    topic: str


def mosquitto_version() -> str:
    done = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


class NamespaceBroker:
    def __init__(
        self,
        net: TrialNetwork,
        folder: Path,
        *,
        port: int = DEFAULT_PORT,
        verbose: bool = False,
        persistence: bool = False,
    ) -> None:
        self.net = net
        self.folder = Path(folder)
        self.port = port
        self.verbose = verbose
        self.persistence = persistence
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / "broker.log"

    def url_for(self, device: str) -> str:
        """The broker URL as ``device`` reaches it over its link."""
        return f"mqtt://{self.net.broker_ip(device)}:{self.port}"

    @property
    def local_url(self) -> str:
        """For clients run inside the broker namespace (no link in between)."""
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            f"user {getpass.getuser()}",
            f"listener {self.port} 0.0.0.0",
            "allow_anonymous true",
            "log_dest stderr",
            "log_timestamp true",
            "max_queued_messages 10000",
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.persistence:
            (self.folder / "data").mkdir(parents=True, exist_ok=True)
            lines.append(f"persistence_location {self.folder / 'data'}/")
        kinds = ["all"] if self.verbose else ["error", "warning", "notice", "information"]
        lines += [f"log_type {kind}" for kind in kinds]
        return "\n".join(lines) + "\n"

    def start(self, *, timeout_s: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "mosquitto.conf"
        config.write_text(self._config(), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self._proc = self.net.popen(
                BROKER, ["mosquitto", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TrialStateError(f"mosquitto exited at start: {self.log_text()[-500:]}")
            listening = self.net.run(BROKER, ["ss", "-Hltn", f"sport = :{self.port}"])
            if listening.strip():
                return
            time.sleep(0.05)
        raise TrialStateError(f"mosquitto did not listen on port {self.port} in {timeout_s:g} s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> NamespaceBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def sent_publishes(self, client_id: str | None = None) -> list[SentPublish]:
        """Every PUBLISH the broker logged as sent (needs ``verbose``), optionally to one client."""
        found = []
        for match in _SENT.finditer(self.log_text()):
            sent = SentPublish(
                client_id=match[1],
                dup=match[2] == "1",
                qos=int(match[3]),
                retain=match[4] == "1",
                topic=match[6],
            )
            if client_id is None or sent.client_id == client_id:
                found.append(sent)
        return found

    def sent_per_topic(self, client_id: str) -> Counter[str]:
        return Counter(s.topic for s in self.sent_publishes(client_id))
