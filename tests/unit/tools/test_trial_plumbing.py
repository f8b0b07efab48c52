"""The parts of tools.trial that need no root: drop plans, addresses, rules, names, CLI specs."""

from __future__ import annotations

import ipaddress
import itertools
import os
import statistics
import threading
import time

import pytest

from tools.trial.addressing import CANDIDATES, choose_base, link_addresses
from tools.trial.drops import DropPlayer, DropWindow, drop_plan
from tools.trial.errors import KernelError, ProfileError, TrialError, TrialStateError
from tools.trial.links import parse_devices
from tools.trial.mqtt_client import connect_size, publish_size
from tools.trial.network import DeviceSpec, TrialNetwork
from tools.trial.profiles import Drops, load_profiles
from tools.trial.registry import process_start, trial_id_of
from tools.trial.shaping import loss_table, tbf_args, tbf_queue_bytes


def test_drop_plan_is_reproducible_per_seed_and_device() -> None:
    drops = Drops(every_s=20, duration_s=2)
    # Execute
    a = drop_plan(drops, seed=7, device="pi-1", horizon_s=600)
    again = drop_plan(drops, seed=7, device="pi-1", horizon_s=600)
    other_device = drop_plan(drops, seed=7, device="pi-2", horizon_s=600)
    other_seed = drop_plan(drops, seed=8, device="pi-1", horizon_s=600)
    # Assert
    assert a == again
    assert a != other_device and a != other_seed
    assert all(w.start_s < 600 and w.duration_s == 2 for w in a)
    assert all(nxt.start_s >= cur.end_s for cur, nxt in itertools.pairwise(a))


def test_drop_plan_gaps_average_every_s() -> None:
    plan = drop_plan(Drops(every_s=20, duration_s=2), seed=1, device="d", horizon_s=200_000)
    gaps = [b.start_s - a.end_s for a, b in itertools.pairwise(plan)]
    assert statistics.mean(gaps) == pytest.approx(20, rel=0.05)


def test_drop_player_plays_the_plan_and_never_leaves_a_link_down() -> None:
    calls: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def set_link(up: bool) -> None:
        with lock:
            calls.append((time.monotonic(), up))

    # Execute: two short drops played in full, then a stop in the middle of a long one
    player = DropPlayer("d", [DropWindow(0.05, 0.1), DropWindow(0.3, 0.1)], set_link).start()
    time.sleep(0.6)
    events = player.stop()
    stuck = DropPlayer("d", [DropWindow(0.0, 60.0)], set_link).start()
    time.sleep(0.1)
    stuck.stop()
    # Assert
    assert [up for _, up in calls] == [False, True, False, True, False, True]
    assert len(events) == 2
    assert all(0.09 <= e.up_at - e.down_at < 0.3 for e in events)


def test_trial_network_is_addressed_outside_every_host_network() -> None:
    taken = [ipaddress.IPv4Network("10.0.0.0/8"), ipaddress.IPv4Network("172.29.5.0/24")]
    # Execute
    base = choose_base(taken)
    first, second = link_addresses(base, 0), link_addresses(base, 1)
    # Assert
    assert base == ipaddress.IPv4Network("172.30.0.0/16")
    assert (str(first.broker), str(first.device)) == ("172.30.0.1", "172.30.0.2")
    assert (str(second.broker), str(second.device)) == ("172.30.0.5", "172.30.0.6")
    assert not first.network.overlaps(second.network)
    with pytest.raises(KernelError, match="every candidate"):
        choose_base(list(CANDIDATES))
    with pytest.raises(ValueError, match="device index 250"):
        link_addresses(base, 250)


def test_tbf_and_nft_rules_follow_the_profile() -> None:
    profiles = load_profiles()
    lora = profiles["lora"].down
    # Execute
    shaped = tbf_args(lora)
    rules = loss_table(table="t", device="wan0", counter_prefix="down", direction=lora)
    clean = loss_table(
        table="t", device="wan0", counter_prefix="down", direction=profiles["clean"].down
    )
    # Assert
    assert shaped == ["tbf", "rate", "9600bit", "burst", "1600", "latency", "2000ms"]
    assert tbf_queue_bytes(lora) == 2400 + 1600
    assert tbf_args(profiles["clean"].down) is None
    assert 'numgen random mod 10000 < 500 counter name "down_lost" drop' in rules
    assert 'hook ingress device "wan0"' in rules
    assert "numgen" not in clean and 'counter name "down_seen"' in clean


def test_device_specs_and_names() -> None:
    profiles = load_profiles()
    # Execute
    devices = parse_devices(["lora:2", "pi=ltem"], profiles)
    # Assert
    assert [(d.name, d.profile.name) for d in devices] == [
        ("lora-1", "lora"),
        ("lora-2", "lora"),
        ("pi", "ltem"),
    ]
    with pytest.raises(TrialError, match="use name=profile or profile:count"):
        parse_devices(["lora:x"], profiles)
    with pytest.raises(ProfileError, match="unknown link profile 'wifi'"):
        parse_devices(["wifi:1"], profiles)
    with pytest.raises(TrialStateError, match="device name 'Pi_1'"):
        TrialNetwork([DeviceSpec("Pi_1", profiles["lora"])])
    with pytest.raises(TrialStateError, match="device names repeat"):
        TrialNetwork([DeviceSpec("a", profiles["lora"]), DeviceSpec("a", profiles["ltem"])])


def test_namespace_names_carry_the_owner_pid() -> None:
    assert trial_id_of("pltr-1234-ab12-d-pi-1") == "1234-ab12"
    assert trial_id_of("pltr-1234-ab12-broker") == "1234-ab12"
    assert trial_id_of("other-ns") is None
    assert trial_id_of("pltr-x-1") is None
    assert process_start(os.getpid()) is not None
    assert process_start(2**22 + 1) is None  # above pid_max: never a live process


def test_mqtt_packet_sizes() -> None:
    # MQTT 3.1.1: 1 byte of type/flags, remaining length (3 bytes from 16384), topic, packet id
    assert publish_size("t/x", 20_000, qos=1) == 1 + 3 + 2 + 3 + 2 + 20_000
    assert publish_size("t", 10, qos=0) == 1 + 1 + 2 + 1 + 10
    assert connect_size("abc") == 1 + 1 + 10 + 2 + 3
