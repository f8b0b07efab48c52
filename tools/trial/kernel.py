"""Running ``ip``, ``tc`` and ``nft``, and checking that the kernel has what a trial relies on.

Every command runs with an argument list (never a shell) and a timeout; a failure raises
KernelError with the command and the tool's own message. Commands that act inside a namespace
use ``ip -n NS`` / ``tc -n NS`` or ``ip netns exec NS`` (nft has no namespace flag).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from tools.trial.errors import KernelError

_TOOLS = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}
_TIMEOUT_S = 30.0


def run(argv: Sequence[str], *, stdin: str | None = None, timeout_s: float = _TIMEOUT_S) -> str:
    """Run a command; its stdout, or KernelError naming the command and its stderr."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise KernelError(f"{argv[0]}: not installed ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"{' '.join(argv)}: no answer within {timeout_s:g} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors = [line.strip() for line in lines if "rror" in line] or lines[-1:] or ["failed"]
        raise KernelError(f"{' '.join(argv)}: {errors[0]}")
    return done.stdout


def run_json(argv: Sequence[str]) -> Any:
    out = run(argv)
    try:
        return json.loads(out) if out.strip() else []
    except ValueError as exc:
        raise KernelError(f"{' '.join(argv)}: output is not JSON ({exc})") from exc


def ip(namespace: str, *args: str) -> str:
    """``ip -n NAMESPACE ARGS...``"""
    return run(["ip", "-n", namespace, *args])


def tc(namespace: str, *args: str) -> str:
    """``tc -n NAMESPACE ARGS...``"""
    return run(["tc", "-n", namespace, *args])


def nft_script(namespace: str, script: str) -> str:
    """Load an nft script inside a namespace (nft has no namespace flag)."""
    return run(ns_exec(namespace, ["nft", "-f", "-"]), stdin=script)


def ns_exec(namespace: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside a network namespace (``ip netns exec`` execs it)."""
    return ["ip", "netns", "exec", namespace, *argv]


def require_root_and_tools() -> None:
    """Root and ip/tc/nft on PATH, or KernelError saying what to install."""
    if os.geteuid() != 0:
        raise KernelError("link emulation needs root (network namespaces, tc, nft)")
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in _TOOLS.items() if not which(tool)]
    if missing:
        raise KernelError("missing: " + ", ".join(missing))


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def probe_features(scratch_namespace: str) -> None:
    """Prove tbf and nft numgen work, in a scratch namespace that is removed again.

    Checked by use, not by reading the kernel config: a qdisc or expression that is missing makes
    the command fail here, with a message naming it, before any trial relies on it.
    """
    run(["ip", "netns", "add", scratch_namespace])
    try:
        ip(scratch_namespace, "link", "add", "p0", "type", "veth", "peer", "p1")
        ip(scratch_namespace, "link", "set", "p0", "mtu", "1500", "up")
        try:
            tbf = ("tbf", "rate", "100kbit", "burst", "1600", "latency", "100ms")
            tc(scratch_namespace, "qdisc", "add", "dev", "p0", "root", *tbf)
        except KernelError as exc:
            raise KernelError(f"tc qdisc tbf is not usable in this kernel: {exc}") from exc
        rules = (
            "table netdev probe {\n  chain c {\n"
            '    type filter hook ingress device "p0" priority 0; policy accept;\n'
            "    numgen random mod 10000 < 1 counter drop\n  }\n}\n"
        )
        try:
            nft_script(scratch_namespace, rules)
        except KernelError as exc:
            raise KernelError(f"nftables netdev ingress + numgen not usable: {exc}") from exc
    finally:
        run(["ip", "netns", "delete", scratch_namespace])
