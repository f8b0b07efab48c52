"""Reading a resume scenario off the broker's log: connections, re-sends, held chunks re-sent."""

from __future__ import annotations

from tools.trial.counters import DirectionCounters, LinkCounters, TcpCounters
from tools.trial.render import resume_table
from tools.trial.resume_report import analyse, broker_connections, task_topics

P = "plada/group/g/task"
LOG = f"""1000: New client connected from 10.201.0.2:4000 as plada-pi (p5, c0, k5).
1000: Sending PUBLISH to plada-pi (d0, q1, r1, m1, '{P}/manifest', ... (300 bytes))
1000: Sending PUBLISH to other (d0, q1, r1, m1, '{P}/chunk/0', ... (986 bytes))
1001: Sending PUBLISH to plada-pi (d0, q1, r0, m2, '{P}/chunk/0', ... (986 bytes))
1001: Sending PUBLISH to plada-pi (d0, q1, r0, m3, '{P}/chunk/1', ... (986 bytes))
1001: Sending PUBLISH to plada-pi (d0, q1, r0, m9, 'plada/device/pi/status', ... (80 bytes))
1020: Client plada-pi has exceeded timeout, disconnecting.
1025: New client connected from 10.201.0.2:4001 as plada-pi (p5, c0, k5).
1025: Sending PUBLISH to plada-pi (d1, q1, r0, m3, '{P}/chunk/1', ... (986 bytes))
1025: Sending PUBLISH to plada-pi (d0, q1, r1, m4, '{P}/manifest', ... (300 bytes))
1025: Sending PUBLISH to plada-pi (d0, q1, r1, m5, '{P}/chunk/0', ... (986 bytes))
1025: Sending PUBLISH to plada-pi (d0, q1, r1, m6, '{P}/chunk/1', ... (986 bytes))
"""


def _counters(down_bytes: int) -> LinkCounters:
    zero = DirectionCounters(
        wire_bytes=0, wire_packets=0, lost_packets=0, lost_bytes=0, queue_drops=0
    )
    return LinkCounters(
        device="pi",
        profile="lora",
        down=zero.model_copy(update={"wire_bytes": down_bytes}),
        up=zero,
        tcp=TcpCounters(connects=2, active_opens=2, out_segs=0, retrans_segs=0, in_errs=0),
        link_downs=1,
    )


def test_broker_log_is_split_per_connection_of_one_client() -> None:
    # Execute
    connections = broker_connections(LOG, client_id="plada-pi", topic_prefix=P)
    # Assert
    assert [c.connected_at for c in connections] == [1000, 1025]
    assert sum(connections[0].sent.values()) == 3  # status and the other client's send excluded
    assert (connections[1].dup, connections[1].retained) == (1, 3)
    assert connections[1].sent[f"{P}/chunk/1"] == 2


def test_held_chunks_sent_again_are_counted() -> None:
    needed = task_topics("g", b"x" * 1500, max_chunk_bytes=1024)  # manifest and two chunks
    received = [(1.0, f"{P}/manifest", 300), (2.0, f"{P}/chunk/0", 986)]
    received += [(30.0, f"{P}/chunk/1", 986), (30.1, f"{P}/manifest", 300)]
    # Execute
    result = analyse(
        kind="long-drop",
        protocol="5",
        drop_s=15.0,
        needed=needed,
        payload_bytes=1500,
        group="g",
        client_id="plada-pi",
        broker_log=LOG,
        agent_log="connected (session present: False)\nconnected (session present: True)\n",
        held_topics=[f"{P}/manifest", f"{P}/chunk/0"],
        received=received,
        counters=_counters(4000),
        ready_s=31.0,
    )
    # Assert: manifest and chunk 0 were held at the drop; both came again after the reconnect
    summary = result["summary"]
    assert task_topics("g", b"x" * 900, max_chunk_bytes=1024) == {P: 900}
    assert sorted(needed) == [f"{P}/chunk/0", f"{P}/chunk/1", f"{P}/manifest"]
    assert summary["messages_needed"] == 3
    assert summary["broker_sends"] == 7 and summary["sends_after_reconnect"] == 4
    assert summary["held_sent_again"] == 2
    assert summary["device_received"] == 4 and summary["device_duplicates"] == 1
    assert result["session_present_on_connect"] == [False, True]


def test_results_render_as_markdown_rows() -> None:
    summary = {
        "device": "agent",
        "mqtt": "5",
        "scenario": "offline",
        "messages_needed": 9,
        "broker_sends": 18,
        "held_at_drop": 0,
        "held_sent_again": 0,
        "device_duplicates": 3,
        "wire_to_needed": 1.9,
    }
    table = resume_table({"scenarios": [{"summary": summary}]})
    assert table.splitlines()[-1] == "| agent | 5 | offline | 9 | 18 | 0 | 0 | 3 | 1.90x |"


def test_task_topics_follow_the_per_task_scheme_publish_uses() -> None:
    # Execute
    whole = task_topics("g", b"x" * 900, max_chunk_bytes=1024, task="shapes")
    chunked = task_topics("g", b"x" * 1500, max_chunk_bytes=1024, task="shapes")
    # Assert
    assert whole == {"plada/group/g/tasks/shapes": 900}
    assert "plada/group/g/tasks/shapes/manifest" in chunked
    assert all(t.startswith("plada/group/g/tasks/shapes/") for t in chunked)
