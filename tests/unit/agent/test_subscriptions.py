"""agent.subscriptions: what is (re)subscribed on a connect and for chunks, and its record."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.subscriptions import Plan, SubscriptionBook, load_record

STANDING = ("g/tasks/+", "g/tasks/+/manifest")
LEGACY = ("g/tasks/#", "g/task/#")
SESSION = "plada-pi@mqtt://b:1883"


def _book(path: Path | None, session: str = SESSION) -> SubscriptionBook:
    return SubscriptionBook(path, session=session, standing=STANDING)


def _chunks(*indices: int) -> list[str]:
    return [f"g/tasks/t/chunk/{i}" for i in indices]


def test_standing_filters_are_subscribed_only_when_the_session_lacks_them(tmp_path: Path) -> None:
    # Prepare
    record = tmp_path / "subscriptions.json"
    book = _book(record)
    # Execute: a new session; SUBACK; a reconnect with the session; a restart (new book) with it
    first = book.connected(session_present=False, legacy=LEGACY)
    book.standing_acknowledged()
    again = book.connected(session_present=True, legacy=LEGACY)
    restarted = _book(record).connected(session_present=True, legacy=LEGACY)
    other_broker = _book(record, "plada-pi@mqtt://c:1883").connected(
        session_present=True, legacy=LEGACY
    )
    lost = _book(record).connected(session_present=False, legacy=LEGACY)  # session expired
    # Assert
    assert first == Plan(subscribe=list(STANDING), retain_handling=1)
    assert again == Plan() and restarted == Plan()
    assert other_broker.subscribe == list(STANDING) and other_broker.retain_handling == 0
    assert lost == Plan(subscribe=list(STANDING), retain_handling=1)


def test_a_session_from_the_wildcard_scheme_is_migrated() -> None:
    # Prepare: no record, but the broker kept the session of an agent that used wildcards
    book = _book(None)
    # Execute
    plan = book.connected(session_present=True, legacy=LEGACY)
    # Assert: wildcards dropped; standing subscribed with their retained copies (state may be new)
    assert plan == Plan(subscribe=list(STANDING), unsubscribe=sorted(LEGACY), retain_handling=0)


def test_an_unacknowledged_subscribe_is_sent_again_at_the_next_connect() -> None:
    # Prepare: the SUBSCRIBE went out, the connection dropped before its SUBACK
    book = _book(None)
    book.connected(session_present=False, legacy=LEGACY)
    book.disconnected()
    # Execute
    plan = book.connected(session_present=True, legacy=LEGACY)
    # Assert
    assert plan.subscribe == list(STANDING)


def test_missing_chunks_are_subscribed_once_and_dropped_as_they_arrive() -> None:
    # Prepare
    book = _book(None)
    book.connected(session_present=False, legacy=LEGACY)
    # Execute
    before_resync = book.want(_chunks(0, 1, 2), resync=False, connected=True)
    resync = book.want(_chunks(0, 1, 2), resync=True, connected=True)
    same = book.want(_chunks(0, 1, 2), resync=False, connected=True)
    held_0 = book.want(_chunks(1, 2), resync=False, connected=True)
    book.unsubscribing(7, held_0.unsubscribe)
    held_1 = book.want(_chunks(2), resync=False, connected=True)  # 0's UNSUBACK still pending
    book.unsubscribed(7)
    # Assert
    assert before_resync == Plan()  # chunks still in the inbox could be asked for again
    assert resync == Plan(subscribe=_chunks(0, 1, 2))
    assert same == Plan()
    assert held_0 == Plan(unsubscribe=_chunks(0))
    assert held_1 == Plan(unsubscribe=_chunks(1))
    assert book.in_session == set(_chunks(1, 2))


def test_a_reconnect_asks_again_for_exactly_the_missing_chunks(tmp_path: Path) -> None:
    # Prepare: chunks 0-3 subscribed; 0 held and unsubscribed; 1 held, its UNSUBACK lost
    record = tmp_path / "subscriptions.json"
    book = _book(record)
    book.connected(session_present=False, legacy=LEGACY)
    book.standing_acknowledged()
    book.want(_chunks(0, 1, 2, 3), resync=True, connected=True)
    book.unsubscribing(1, book.want(_chunks(1, 2, 3), resync=False, connected=True).unsubscribe)
    book.unsubscribed(1)
    book.unsubscribing(2, book.want(_chunks(2, 3), resync=False, connected=True).unsubscribe)
    book.disconnected()
    # Execute: while down nothing is sent; the reconnect (session present) and the resync; and a
    # restart of the daemon from the same record
    offline = book.want(_chunks(2, 3), resync=False, connected=False)
    standing = book.connected(session_present=True, legacy=LEGACY)
    resync = book.want(_chunks(2, 3), resync=True, connected=True)
    restarted = _book(record)
    restarted.connected(session_present=True, legacy=LEGACY)
    after_restart = restarted.want(_chunks(3), resync=True, connected=True)
    # Assert
    assert offline == Plan() and standing == Plan()
    assert resync == Plan(subscribe=_chunks(2, 3), unsubscribe=_chunks(1))
    assert after_restart == Plan(subscribe=_chunks(3), unsubscribe=_chunks(1, 2))


def test_a_new_session_holds_no_chunk_subscription(tmp_path: Path) -> None:
    # Prepare
    book = _book(tmp_path / "subscriptions.json")
    book.connected(session_present=False, legacy=LEGACY)
    book.want(_chunks(0, 1), resync=True, connected=True)
    book.disconnected()
    # Execute: the broker lost the session
    book.connected(session_present=False, legacy=LEGACY)
    plan = book.want(_chunks(1), resync=True, connected=True)
    # Assert: nothing to unsubscribe, the missing one subscribed
    assert plan == Plan(subscribe=_chunks(1))


def test_an_unreadable_record_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    path = tmp_path / "subscriptions.json"
    path.write_text('{"session": "x", "standing": "not a list"}', encoding="utf-8")
    # Execute
    record = load_record(path, session="x")
    # Assert
    assert record.standing == [] and record.session == "x"
    assert "standing" in caplog.text
