"""Issue 9: on PostgreSQL the outbox relay sleeps until events are committed (LISTEN/NOTIFY) instead of
polling twenty times a second. A relay whose poll intervals are an hour still publishes an event committed
while it sleeps: only the commit's notification can wake it.

Real PostgreSQL; the transport is a list (what the relay published).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.envelope import Envelope
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.outbox import OutboxRelay, PendingEvent, add_event

#: longer than the test may run: a relay that wakes within the test was woken by a notification
HOUR = 3600.0
#: a bound for a broken build, not a measurement
WAIT = 60.0


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(postgres_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def _commit_event(sessions: sessionmaker[Session], n: int) -> Envelope:
    envelope = Envelope.new("test.woken", {"n": n}, source="/test", subject="CUST-1")
    with sessions() as session, session.begin():
        add_event(session, envelope)
    return envelope


def test_a_sleeping_relay_is_woken_by_the_commit_of_an_event(sessions: sessionmaker[Session]) -> None:
    published: list[str] = []
    turns = threading.Semaphore(0)

    def publish(events: Sequence[PendingEvent]) -> None:
        published.extend(event.message_id for event in events)

    relay = OutboxRelay(sessions, publish)
    counted = relay._relay_turn

    def turn() -> tuple[int, int] | None:
        done = counted()
        turns.release()
        return done

    relay._relay_turn = turn  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(
        target=relay.run, args=(stop,), kwargs={"idle_interval": HOUR, "busy_interval": HOUR, "listen_interval": HOUR}
    )
    thread.start()
    try:
        assert turns.acquire(timeout=WAIT), "the relay's first turn"
        assert not published  # nothing was pending: it sleeps now, for an hour unless woken
        first = _commit_event(sessions, 1)
        assert turns.acquire(timeout=WAIT), "the relay was not woken by the commit"
        second = _commit_event(sessions, 2)
        assert turns.acquire(timeout=WAIT), "the relay was not woken by the second commit"
        assert published == [first.id, second.id]
    finally:
        stop.set()
        _commit_event(sessions, 3)  # wakes it to see the stop
        thread.join(WAIT)
    assert not thread.is_alive()
