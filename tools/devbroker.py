"""A real MQTT broker for tests: mosquitto on free local ports with its own temp config.

Passwords (via ``mosquitto_passwd``), the shipped ACL firmware_configs/mosquitto.acl
(devices read task topics and write only under their own device topic), a TLS listener with
certificates made by ``cryptography`` in the test, and persistence so a restart keeps retained
messages and sessions. Where the mosquitto binary is missing (a user's machine, never CI) it
falls back to the amqtt broker `make demo` uses, in its own process: MQTT 3.1.1 only, no TLS,
passwords or ACL (tests needing those skip there, outside CI).
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ADMIN_USER = "builder"


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
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_tls_files(folder: Path) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("plada-test-ca"))
        .issuer_name(_name("plada-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, *, server: bool
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf("localhost", server=True)
    client_cert, client_key = leaf("plada-test-client", server=False)
    files = TlsFiles(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.client_cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, files.server_key)
    _write_key(client_key, files.client_key)
    return files


REPO = Path(__file__).resolve().parents[1]
ACL_FILE = REPO / "firmware_configs" / "mosquitto.acl"


@dataclass
class Broker:
    """A running broker. ``url`` is plain MQTT; ``tls_url`` the TLS listener (mosquitto only)."""

    kind: str  # "mosquitto" or "amqtt"
    folder: Path
    port: int
    tls_port: int | None = None
    tls: TlsFiles | None = None
    passwords: dict[str, str] = field(default_factory=dict)
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

    def add_user(self, username: str, password: str | None = None) -> str:
        """Register a user (mosquitto_passwd) and reload the broker; returns the password."""
        password = password or f"pw-{username}-{os.getpid()}"
        self.passwords[username] = password
        if self.kind == "mosquitto":
            subprocess.run(
                ["mosquitto_passwd", "-b", str(self.folder / "passwd"), username, password],
                check=True,
                capture_output=True,
            )
            if self._proc is not None:
                self._proc.send_signal(1)  # SIGHUP: reload password file and ACL
                time.sleep(0.2)
        return password

    def add_users(self, usernames: list[str]) -> None:
        """Register many users with a single broker reload."""
        for name in usernames:
            self.passwords[name] = f"pw-{name}-{os.getpid()}"
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
        if self._proc is not None:
            self._proc.send_signal(1)
            time.sleep(0.3)

    def password_file(self, username: str) -> Path:
        path = self.folder / f"{username}.password"
        path.write_text(self.passwords[username] + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def start(self) -> None:
        if self.kind == "mosquitto":
            cmd = ["mosquitto", "-c", str(self.folder / "mosquitto.conf")]
        else:  # the demo's fallback broker, in its own process (its asyncio leaks stay there)
            cmd = [sys.executable, "-m", "tools.demo", "--serve-amqtt", str(self.port)]
        log = (self.folder / "broker.log").open("ab")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        wait_port(self.port)
        if self.tls_port is not None:
            wait_port(self.tls_port)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def restart(self, *, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def log_text(self) -> str:
        path = self.folder / "broker.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _write_mosquitto_config(broker: Broker) -> None:
    folder = broker.folder
    (folder / "passwd").touch()
    # The shipped example ACL, unchanged: the tests prove what users deploy.
    shutil.copyfile(ACL_FILE, folder / "acl")
    (folder / "data").mkdir(exist_ok=True)
    if broker.tls is None:
        raise RuntimeError("a mosquitto test broker needs its TLS files")
    lines = [
        f"user {getpass.getuser()}",  # as root: do not drop to the mosquitto user
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        "persistence true",
        f"persistence_location {folder / 'data'}/",
        "autosave_interval 1",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "max_queued_messages 10000",
        f"listener {broker.port} 127.0.0.1",
        f"listener {broker.tls_port} 127.0.0.1",
        f"cafile {broker.tls.ca}",
        f"certfile {broker.tls.server_cert}",
        f"keyfile {broker.tls.server_key}",
        "require_certificate false",
    ]
    (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_broker(folder: Path, *, prefer: str | None = None) -> Broker:
    """Start mosquitto (or amqtt where mosquitto is missing) with an admin user registered."""
    folder.mkdir(parents=True, exist_ok=True)
    prefer = prefer or os.environ.get("PLADA_TEST_BROKER")  # "amqtt" to try the fallback
    use_mosquitto = prefer != "amqtt" and shutil.which("mosquitto") is not None
    if use_mosquitto:
        broker = Broker(
            kind="mosquitto",
            folder=folder,
            port=free_port(),
            tls_port=free_port(),
            tls=make_tls_files(folder / "tls"),
        )
        _write_mosquitto_config(broker)
    else:
        if os.environ.get("CI"):
            raise RuntimeError("mosquitto is required in CI (.ci/run installs it)")
        broker = Broker(kind="amqtt", folder=folder, port=free_port())
    broker.add_user(ADMIN_USER)
    broker.start()
    return broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker per test (mosquitto when installed)."""
    running = start_broker(tmp_path / "broker")
    try:
        yield running
    finally:
        running.stop()


def require_secure(broker: Broker) -> None:
    """Skip outside CI when only amqtt is available; in CI mosquitto is mandatory."""
    if not broker.secure:
        pytest.skip("needs mosquitto (passwords, ACL, TLS); amqtt fallback in use")
