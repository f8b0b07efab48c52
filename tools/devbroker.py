"""The development broker: mosquitto on free local ports with its own folder and config.

One module for every broker that is not a user's: the demo's (detached, left running so that
`plada-build fleet status` works afterwards), the benchmarks' and the tests' (one per test).

mosquitto gets passwords (`mosquitto_passwd`), the shipped ACL firmware_configs/mosquitto.acl
(devices read task topics and write only under their own device topic), persistence (a restart
keeps retained messages and sessions) and, when asked, a TLS listener with throwaway certificates.
Where the mosquitto binary is missing (a user's machine, never CI) it falls back to an embedded
amqtt broker in its own process: MQTT 3.1.1 only, anonymous, no TLS or ACL (`secure` is False).

    python -m tools.devbroker --serve-amqtt PORT     # that fallback broker, in the foreground
"""

from __future__ import annotations

import argparse
import getpass
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.devtls import TlsFiles, make_tls_files

ADMIN_USER = "builder"
REPO = Path(__file__).resolve().parents[1]
ACL_FILE = REPO / "firmware_configs" / "mosquitto.acl"
PID_FILE = "broker.pid"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, *, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on port {port} within {timeout_s} s")


@dataclass(frozen=True)
class BrokerTuning:
    """Settings of a broker under fleet-scale load (bench.fleet); the defaults are the tests'."""

    max_connections: int = -1  # mosquitto's own default: no limit but the file descriptors
    nofile: int | None = None  # RLIMIT_NOFILE of the broker process (None: inherited)
    autosave_interval_s: int = 1  # tests restart the broker: keep the persistence file fresh
    set_tcp_nodelay: bool = False


@dataclass
class Broker:
    """A running broker. ``url`` is plain MQTT; ``tls_url`` the TLS listener (mosquitto only)."""

    kind: str  # "mosquitto" or "amqtt"
    folder: Path
    port: int
    tls_port: int | None = None
    tls: TlsFiles | None = None
    detached: bool = False  # its own session: outlives this process (the demo's)
    passwords: dict[str, str] = field(default_factory=dict)
    tuning: BrokerTuning = field(default_factory=BrokerTuning)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this broker has no TLS listener")
        return f"mqtts://127.0.0.1:{self.tls_port}"

    @property
    def secure(self) -> bool:
        """Passwords, ACL and TLS are enforced (mosquitto)."""
        return self.kind == "mosquitto"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def add_user(self, username: str, password: str | None = None) -> str:
        """Register a user (mosquitto_passwd) and reload the broker; returns the password."""
        self.passwords[username] = password or secrets.token_urlsafe(18)
        if self.kind == "mosquitto":
            subprocess.run(
                ["mosquitto_passwd", "-b", str(self.folder / "passwd"), username,
                 self.passwords[username]],
                check=True,
                capture_output=True,
            )  # fmt: skip
            self._reload(0.2)
        return self.passwords[username]

    def add_users(self, usernames: list[str]) -> None:
        """Register many users with a single broker reload."""
        for name in usernames:
            self.passwords[name] = secrets.token_urlsafe(18)
        if self.kind != "mosquitto":
            return
        batch = self.folder / "passwd.batch"
        batch.write_text(
            "".join(f"{name}:{self.passwords[name]}\n" for name in usernames), encoding="utf-8"
        )
        subprocess.run(["mosquitto_passwd", "-U", str(batch)], check=True)  # hash in place
        with (self.folder / "passwd").open("a", encoding="utf-8") as fh:
            fh.write(batch.read_text(encoding="utf-8"))
        batch.unlink()
        self._reload(0.3)

    def _reload(self, settle_s: float) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)  # re-read the password file and the ACL
            time.sleep(settle_s)

    def password_file(self, username: str) -> Path:
        path = self.folder / f"{username}.password"
        path.write_text(self.passwords[username] + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def start(self) -> None:
        if self.kind == "mosquitto":
            cmd = ["mosquitto", "-c", str(self.folder / "mosquitto.conf")]
        else:  # in its own process, so its asyncio loop and leaks stay there
            cmd = [sys.executable, "-m", "tools.devbroker", "--serve-amqtt", str(self.port)]
        with (self.folder / "broker.log").open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=self.detached,
                preexec_fn=self._raise_nofile if self.tuning.nofile else None,
            )
        (self.folder / PID_FILE).write_text(f"{self._proc.pid}\n", encoding="utf-8")
        wait_port(self.port)
        if self.tls_port is not None:
            wait_port(self.tls_port)

    def _raise_nofile(self) -> None:
        """In the child before exec: one descriptor per client connection, and then some."""
        want = self.tuning.nofile or 0
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:  # raising the hard limit needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    def nofile(self) -> int | None:
        """The running broker's open-file limit (soft), from /proc."""
        if self.pid is None:
            return None
        for line in Path(f"/proc/{self.pid}/limits").read_text(encoding="utf-8").splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return int(soft) if soft.isdigit() else None
        return None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
            (self.folder / PID_FILE).unlink(missing_ok=True)

    def restart(self, *, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _write_mosquitto_config(broker: Broker) -> None:
    folder = broker.folder
    (folder / "passwd").touch()
    # The shipped example ACL, unchanged: the tests prove what users deploy.
    shutil.copyfile(ACL_FILE, folder / "acl")
    (folder / "data").mkdir(exist_ok=True)
    lines = [
        f"user {getpass.getuser()}",  # as root: do not drop to the mosquitto user
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        "persistence true",
        f"persistence_location {folder / 'data'}/",
        f"autosave_interval {broker.tuning.autosave_interval_s}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "max_queued_messages 10000",
        f"set_tcp_nodelay {str(broker.tuning.set_tcp_nodelay).lower()}",
        f"listener {broker.port} 127.0.0.1",
        f"max_connections {broker.tuning.max_connections}",  # a listener's setting
    ]
    if broker.tls is not None:
        lines += [
            f"listener {broker.tls_port} 127.0.0.1",
            f"cafile {broker.tls.ca}",
            f"certfile {broker.tls.server_cert}",
            f"keyfile {broker.tls.server_key}",
            "require_certificate false",
        ]
    (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_broker(
    folder: Path,
    *,
    users: list[str] | None = None,
    tls: bool = True,
    detached: bool = False,
    prefer: str | None = None,
    tuning: BrokerTuning | None = None,
) -> Broker:
    """Start mosquitto (or amqtt where mosquitto is missing, never in CI) in `folder`, with the
    admin user and `users` registered."""
    folder.mkdir(parents=True, exist_ok=True)
    prefer = prefer or os.environ.get("PLADA_TEST_BROKER")  # "amqtt" to try the fallback
    if prefer != "amqtt" and shutil.which("mosquitto") and shutil.which("mosquitto_passwd"):
        broker = Broker(
            kind="mosquitto",
            folder=folder,
            port=free_port(),
            tls_port=free_port() if tls else None,
            tls=make_tls_files(folder / "tls") if tls else None,
            detached=detached,
            tuning=tuning or BrokerTuning(),
        )
        _write_mosquitto_config(broker)
    else:
        if os.environ.get("CI"):
            raise RuntimeError("mosquitto is required in CI (.ci/run installs it)")
        broker = Broker(kind="amqtt", folder=folder, port=free_port(), detached=detached)
    broker.add_user(ADMIN_USER)
    if users:
        broker.add_users(users)
    broker.start()
    return broker


def stop_previous(folder: Path) -> int | None:
    """Stop the detached broker an earlier run left in `folder` (by its pid file); its pid."""
    pid_file = folder / PID_FILE
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        pid_file.unlink(missing_ok=True)
        return None
    pid_file.unlink(missing_ok=True)
    if b"mosquitto" not in cmdline and b"tools.devbroker" not in cmdline:
        return None  # the pid was reused by something else
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    return pid


def serve_amqtt(port: int) -> int:
    """The zero-install fallback broker (MQTT 3.1.1, anonymous, loopback only)."""
    import asyncio

    from amqtt.broker import Broker as AmqttBroker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }

    async def serve() -> None:
        broker = AmqttBroker(config)
        await broker.start()
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devbroker", description=__doc__)
    parser.add_argument("--serve-amqtt", type=int, required=True, metavar="PORT")
    return serve_amqtt(parser.parse_args(argv).serve_amqtt)


if __name__ == "__main__":
    sys.exit(main())
