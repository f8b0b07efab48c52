"""plada.topics: the topic scheme the agent subscribes to and the builder publishes on."""

from __future__ import annotations

import pytest
from paho.mqtt.client import topic_matches_sub

from plada.topics import BrokerUrl, ParsedTopic, TopicKind, TopicScheme, parse_broker_url


def test_scheme_builds_documented_topics() -> None:
    # Prepare
    scheme = TopicScheme()
    # Execute / Assert
    assert scheme.task("lab") == "plada/group/lab/task"
    assert scheme.task_manifest("lab") == "plada/group/lab/task/manifest"
    assert scheme.task_chunk("lab", 3) == "plada/group/lab/task/chunk/3"
    assert scheme.task_filter("lab") == "plada/group/lab/task/#"
    assert scheme.status("pi-1") == "plada/device/pi-1/status"
    assert scheme.availability("pi-1") == "plada/device/pi-1/availability"
    assert scheme.result("pi-1", "fashion") == "plada/device/pi-1/result/fashion"
    assert scheme.all_results_filter("fashion") == "plada/device/+/result/fashion"


def test_scheme_custom_base_round_trips() -> None:
    # Prepare
    scheme = TopicScheme("site_a/ml")
    # Execute
    parsed = [
        scheme.parse(scheme.task("g")),
        scheme.parse(scheme.task_manifest("g")),
        scheme.parse(scheme.task_chunk("g", 12)),
        scheme.parse(scheme.status("d")),
        scheme.parse(scheme.availability("d")),
        scheme.parse(scheme.result("d", "t")),
    ]
    # Assert
    assert parsed == [
        ParsedTopic(TopicKind.TASK, group="g"),
        ParsedTopic(TopicKind.MANIFEST, group="g"),
        ParsedTopic(TopicKind.CHUNK, group="g", chunk_index=12),
        ParsedTopic(TopicKind.STATUS, device_id="d"),
        ParsedTopic(TopicKind.AVAILABILITY, device_id="d"),
        ParsedTopic(TopicKind.RESULT, device_id="d", task="t"),
    ]


@pytest.mark.parametrize(
    "topic",
    [
        "other/group/g/task",
        "plada/group/g/task/chunk/x",
        "plada/group/g/task/chunk/01",
        "plada/group/g/task/extra",
        "plada/device/d",
        "plada/device/D/status",
        "plada",
    ],
)
def test_scheme_parse_ignores_foreign_topics(topic: str) -> None:
    assert TopicScheme().parse(topic) is None


@pytest.mark.parametrize("bad", ["", "/plada", "plada/", "Plada", "a/b/c/d/e", "pl ada"])
def test_scheme_rejects_bad_base(bad: str) -> None:
    with pytest.raises(ValueError, match="base topic"):
        TopicScheme(bad)


def test_scheme_rejects_wildcards_in_ids() -> None:
    # Prepare
    scheme = TopicScheme()
    # Execute / Assert
    with pytest.raises(ValueError, match="device id"):
        scheme.status("a/+")
    with pytest.raises(ValueError, match="group"):
        scheme.task("#")
    with pytest.raises(ValueError, match="chunk index"):
        scheme.task_chunk("g", -1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost", BrokerUrl("localhost", 1883, tls=False)),
        ("mqtts://broker.example:9000", BrokerUrl("broker.example", 9000, tls=True)),
        ("mqtts://10.0.0.2", BrokerUrl("10.0.0.2", 8883, tls=True)),
    ],
)
def test_parse_broker_url_defaults_ports(url: str, expected: BrokerUrl) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://h", "mqtt://user:pw@h", "mqtt://", "mqtt://h:99999", "mqtt://h/x"]
)
def test_parse_broker_url_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        parse_broker_url(url)


def test_scheme_per_task_topics_round_trip() -> None:
    # Prepare
    scheme = TopicScheme()
    # Execute
    built = [
        scheme.task("lab", "bins"),
        scheme.task_manifest("lab", "bins"),
        scheme.task_chunk("lab", 7, "bins"),
        scheme.task_retired("lab", "bins"),
    ]
    parsed = [scheme.parse(t) for t in built]
    # Assert
    assert built == [
        "plada/group/lab/tasks/bins",
        "plada/group/lab/tasks/bins/manifest",
        "plada/group/lab/tasks/bins/chunk/7",
        "plada/group/lab/tasks/bins/retired",
    ]
    assert parsed == [
        ParsedTopic(TopicKind.TASK, group="lab", task="bins"),
        ParsedTopic(TopicKind.MANIFEST, group="lab", task="bins"),
        ParsedTopic(TopicKind.CHUNK, group="lab", chunk_index=7, task="bins"),
        ParsedTopic(TopicKind.RETIRED, group="lab", task="bins"),
    ]
    assert scheme.group_filters("lab") == ("plada/group/lab/tasks/#", "plada/group/lab/task/#")
    assert scheme.task_filter("lab", "bins") == "plada/group/lab/tasks/bins/#"


@pytest.mark.parametrize(
    "topic",
    [
        "plada/group/g/tasks",
        "plada/group/g/tasks/t/extra",
        "plada/group/g/tasks/t/chunk/01",
        "plada/group/g/tasks/T",
        "plada/group/g/tasks/t/retired/x",
    ],
)
def test_scheme_parse_ignores_malformed_per_task_topics(topic: str) -> None:
    assert TopicScheme().parse(topic) is None


def test_device_filters_take_every_task_message_but_chunks() -> None:
    # The standing filters of the subscription book: a revocation must reach the device (a
    # staged rollout's abort), a chunk must not (it is subscribed one by one when missing).
    scheme = TopicScheme()
    filters = scheme.device_filters("lab")

    def matched(topic: str) -> bool:
        return any(topic_matches_sub(f, topic) for f in filters)

    for topic in (
        scheme.task("lab", "bins"),
        scheme.task_manifest("lab", "bins"),
        scheme.task_retired("lab", "bins"),
        scheme.task_revoked("lab", "bins"),
    ):
        assert matched(topic), topic
    assert not matched(scheme.task_chunk("lab", 0, "bins"))
    assert not matched(scheme.task_revoked("other", "bins"))
