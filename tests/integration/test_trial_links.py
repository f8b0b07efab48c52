"""Emulated links with real namespaces, a real mosquitto in the broker namespace and real MQTT
clients in the device namespaces: rate, loss, a link drop and recovery, kernel byte counters that
agree with what the MQTT client sent, and teardown after the trial process is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.netns import REPO, Subscriber, publish, require_link_emulation, trial
from tools.trial import registry
from tools.trial.drops import DropPlayer, DropWindow
from tools.trial.network import BROKER, DeviceSpec
from tools.trial.profiles import load_profiles, parse_profiles
from tools.trial.teardown import pids_in

pytestmark = [pytest.mark.netns, pytest.mark.broker]

PINGS = 1000
FRAME_HEADERS = 14 + 20 + 32  # Ethernet + IPv4 + TCP with timestamps, per frame
LOSSY = {
    "description": "test: 20 % loss each way",
    "source": "this test's own numbers",
    # a deep queue: a ping delayed by a loaded machine catches up in a burst, and a short tbf
    # queue refused part of it (ENOBUFS, never on the wire), leaving too few packets to count
    "down": {"rate_kbit": 4000, "queue_ms": 1000, "loss_percent": 20},
    "up": {"rate_kbit": 4000, "queue_ms": 1000, "loss_percent": 20},
}


def test_rate_is_close_to_the_profile_both_ways(tmp_path: Path) -> None:
    # Prepare: an LTE-M device (300 kbit/s down, 375 up)
    with trial([DeviceSpec("m1", load_profiles()["ltem"])], tmp_path) as (net, broker):
        url = broker.url_for("m1")
        sub = Subscriber(net, "m1", url, "down/x", count=5)
        # Execute: 100 kB up from the device, then 100 kB down to it from the broker side
        up = publish(net, "m1", url, "up/x", size=20_000, count=5)
        sent_down = publish(net, BROKER, broker.local_url, "down/x", size=20_000, count=5)
        down = sub.result()
    # Assert: payload goodput within 12 % under the token rate, never above it
    up_kbit = up["payload_bytes"] * 8 / up["seconds"] / 1000
    down_kbit = down["payload_bytes"] * 8 / (down["last_at"] - sent_down["connected_at"]) / 1000
    assert up["ok"] and down["ok"]
    assert 0.88 * 375 <= up_kbit <= 1.0 * 375, up_kbit
    assert 0.88 * 300 <= down_kbit <= 1.0 * 300, down_kbit


def test_loss_is_applied_and_counted_by_the_kernel(tmp_path: Path) -> None:
    # Prepare: 20 % loss each way on a fast link, so the count is large and the test short
    lossy = parse_profiles({"profile": {"lossy": LOSSY}})["lossy"]
    with trial([DeviceSpec("l1", lossy)], tmp_path) as (net, broker):
        before = net.counters("l1")
        # Execute: 1,000 pings from the broker side, then an MQTT upload over the same link.
        # 10 ms apart: a loaded machine delays a ping process, and a faster train arrived as a
        # burst the qdisc partly refused before the wire (too few packets left to count)
        pings = ["ping", "-q", "-c", str(PINGS), "-i", "0.01", "-W", "2", net.device_ip("l1")]
        ping = subprocess.run(
            net.argv(BROKER, pings), capture_output=True, text=True, check=False, timeout=120
        )
        pinged = net.counters("l1").minus(before)
        upload = publish(net, "l1", broker.url_for("l1"), "up/x", size=30_000, count=2)
        total = net.counters("l1").minus(before)
    # Assert: the kernel counted 20 % +- 5 sigma lost each way; ping saw both directions' loss
    for direction in (pinged.down, pinged.up):
        assert direction.wire_packets >= 400
        assert direction.lost_packets / direction.wire_packets == pytest.approx(0.2, abs=0.08)
    replies = int(ping.stdout.split(" received")[0].rsplit(",", 1)[1])
    both_ways = 0.8 * 0.8
    five_sigma = 5 * (PINGS * both_ways * (1 - both_ways)) ** 0.5
    assert replies == pytest.approx(PINGS * both_ways, abs=five_sigma)
    assert upload["ok"]  # TCP got the data through, and had to resend to do it
    assert total.tcp.retrans_segs > 0
    assert total.up.lost_packets > pinged.up.lost_packets


def test_link_drop_and_recovery(tmp_path: Path) -> None:
    # Prepare: an NB-IoT device with a persistent-session subscriber, keepalive 3 s
    with trial([DeviceSpec("n1", load_profiles()["nbiot"])], tmp_path) as (net, broker):
        sub = Subscriber(
            net,
            "n1",
            broker.url_for("n1"),
            "t/#",
            count=4,
            timeout_s=40,
            persistent_as="n1-sub",
            keepalive_s=3,
        )
        before = net.counters("n1")

        def set_link(up: bool) -> None:
            net.set_link("n1", up=up)

        # Execute: a 1 s drop (TCP rides it out), then a 7 s drop (the keepalive expires, the
        # client reconnects); two messages are published after each drop begins
        short = DropPlayer("n1", [DropWindow(0.0, 1.0)], set_link).start()
        time.sleep(0.3)
        probe = ["ping", "-c", "1", "-W", "0.3", net.broker_ip("n1")]
        down_ping = subprocess.run(net.argv("n1", probe), capture_output=True, check=False)
        publish(net, BROKER, broker.local_url, "t/short", size=100, count=2)
        short.wait()
        time.sleep(3.0)
        after_short = net.counters("n1").minus(before)
        long = DropPlayer("n1", [DropWindow(0.0, 7.0)], set_link).start()
        time.sleep(3.0)
        publish(net, BROKER, broker.local_url, "t/long", size=100, count=2)
        events = long.wait()
        result = sub.result(timeout_s=60)
        total = net.counters("n1").minus(before)
    # Assert
    assert down_ping.returncode != 0  # the link really was down
    assert after_short.tcp.connects == 0  # the short drop did not break the connection
    assert result["ok"] and result["messages"] == 4  # both drops' messages arrived afterwards
    assert result["connects"] == 2 and total.tcp.connects == 1  # one reconnect, kernel-counted
    assert 6.9 <= events[0].up_at - events[0].down_at < 8.0
    assert total.link_downs == 2  # two drops, as the kernel counted them


def test_kernel_counters_match_the_mqtt_bytes(tmp_path: Path) -> None:
    # Prepare: a clean link, so every byte on the wire is sent once
    with trial([DeviceSpec("c1", load_profiles()["clean"])], tmp_path) as (net, broker):
        url = broker.url_for("c1")
        before = net.counters("c1")
        # Execute: 50 kB up, then 50 kB down
        up = publish(net, "c1", url, "a/b", size=10_000, count=5)
        sent = net.counters("c1").minus(before)
        sub = Subscriber(net, "c1", url, "c/d", count=5)
        publish(net, BROKER, broker.local_url, "c/d", size=10_000, count=5)
        down = sub.result()
        received = net.counters("c1").minus(before).minus(sent)
    # Assert: frames minus their headers are the MQTT bytes, to within two frames' headers
    for counted, mqtt_bytes in (
        (sent.up, up["mqtt_bytes_sent"]),
        (sent.down, up["mqtt_bytes_received"]),
        (received.up, down["mqtt_bytes_sent"]),
        (received.down, down["mqtt_bytes_received"]),
    ):
        tcp_payload = counted.wire_bytes - counted.wire_packets * FRAME_HEADERS
        assert abs(tcp_payload - mqtt_bytes) <= 2 * FRAME_HEADERS, (counted, mqtt_bytes)
    assert sent.tcp.connects == 1 and received.tcp.connects == 1


def _snapshot() -> tuple[set[str], set[str], str]:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = {line.split(":")[1].strip() for line in links.stdout.splitlines()}
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return set(registry.trial_namespaces()), names, tables.stdout


def _start_links_up(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.trial.links",
            "up",
            "a=lora",
            "b=clean",
            "--broker",
            "--workdir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return proc, json.loads(line)


def _wait_gone(namespaces: list[str], timeout_s: float = 15.0) -> set[str]:
    deadline = time.monotonic() + timeout_s
    left = set(namespaces)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = set(namespaces) & set(registry.trial_namespaces())
    return left


def test_sigkill_of_the_trial_process_leaves_nothing_behind(tmp_path: Path) -> None:
    # Prepare
    require_link_emulation()
    namespaces_before, links_before, tables_before = _snapshot()
    proc, ready = _start_links_up(tmp_path)
    record = registry.load(registry.record_path(str(ready["trial_id"])))
    mosquitto = pids_in(record.broker_namespace)
    # Execute
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    left = _wait_gone(record.namespaces())
    # Assert
    assert len(mosquitto) == 1
    assert left == set()
    assert _snapshot() == (namespaces_before, links_before, tables_before)
    assert registry.process_start(mosquitto[0]) is None
    assert not registry.record_path(record.trial_id).exists()


def test_cleanup_reaps_a_trial_whose_guardian_died_too(tmp_path: Path) -> None:
    # Prepare: kill the guardian first, then the owner: nothing tears down by itself
    require_link_emulation()
    proc, ready = _start_links_up(tmp_path)
    record = registry.load(registry.record_path(str(ready["trial_id"])))
    assert record.guardian_pid is not None
    os.kill(record.guardian_pid, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    time.sleep(0.5)
    assert set(record.namespaces()) <= set(registry.trial_namespaces())
    # Execute
    cleanup = subprocess.run(
        [sys.executable, "-m", "tools.trial.links", "cleanup"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    # Assert
    assert record.trial_id in cleanup.stdout
    assert _wait_gone(record.namespaces(), timeout_s=1) == set()
    assert not registry.record_path(record.trial_id).exists()
