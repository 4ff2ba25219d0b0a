"""Issue 6, case 8: an outbox row whose event type no route is bound to, ahead of an ``order.placed``.

The relay parks the unroutable row with its reason and relays the rest exactly once; a parked row
is listed and, once a queue is bound to its type, released and relayed. Runs on the embedded
transport and on RabbitMQ, with the CRM on SQLite and on PostgreSQL, through the application's
own wiring (``Application.outbox_relay``); no worker runs, so the queues keep what was relayed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.envelope import Envelope
from canonical_model.errors import EsbError, Unroutable
from connectors.base import QueueSpec, Topology, Transport
from crm_core import outbox
from crm_core.models import OutboxRow
from esb.app import Application
from esb.config import EsbSettings
from tests.queues import drain_all

COMBINATIONS = [("embedded", "sqlite"), ("embedded", "postgresql"), ("rabbitmq", "sqlite"), ("rabbitmq", "postgresql")]


@pytest.fixture(params=COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def app(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Application]:
    transport, database = request.param
    overrides: dict[str, object] = {
        "data_dir": tmp_path,
        "namespace": unique_name,
        "transport": transport,
        "erp": {"url": "http://127.0.0.1:9/erp"},  # never called: no route runs here
    }
    if database == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    if transport == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("rabbitmq_url")
    with Application(EsbSettings(**overrides)) as application:  # type: ignore[arg-type]
        yield application


@pytest.fixture
def merged_bound(app: Application) -> Iterator[Topology]:
    """The application's topology plus a queue bound to ``customer.merged`` (declared by the test)."""
    base = app.topology
    bound = Topology(
        queues=(*base.queues, QueueSpec(f"{base.exchange}.merged", ("customer.merged",))),
        exchange=base.exchange,
        dead_letter_exchange=base.dead_letter_exchange,
        dead_letter_queue=base.dead_letter_queue,
    )
    yield bound
    app.transport.delete(bound)  # type: ignore[attr-defined]


def _write_events(app: Application, *types: str) -> list[Envelope]:
    envelopes = [Envelope.new(t, {"n": i}, source="/crm", subject="CUST-1") for i, t in enumerate(types)]
    with app.sessions() as session, session.begin():
        for envelope in envelopes:
            outbox.add_event(session, envelope)
    return envelopes


def _drain(transport: Transport, topology: Topology, queue: str) -> list[str | None]:
    """Take every ready message of ``queue``, of each of its shards (acking it); returns their message ids."""
    return [delivery.message_id for delivery in drain_all(transport, topology, queue)]


def test_an_unroutable_event_is_parked_and_the_rest_relayed_exactly_once(
    app: Application, merged_bound: Topology
) -> None:
    merged, placed, created = _write_events(app, "customer.merged", "order.placed", "customer.created")
    relay = app.outbox_relay()
    failures = []
    for _ in range(3):  # relaying again must neither fail nor publish again
        try:
            relay.relay_once()
        except EsbError as exc:
            failures.append(str(exc))
    orders_queue = app.queue_of(next(r for r in app.routes if "order.placed" in r.bindings))
    customers_queue = app.queue_of(next(r for r in app.routes if "customer.created" in r.bindings))
    assert _drain(app.transport, app.topology, orders_queue) == [placed.id]
    assert _drain(app.transport, app.topology, customers_queue) == [created.id]
    assert failures == []
    assert relay.pending() == 0

    with app.sessions() as session:
        rows = {row.message_id: row for row in session.scalars(select(OutboxRow))}
    assert rows[merged.id].published_at is None and rows[merged.id].parked_at is not None
    assert rows[merged.id].park_reason == "no queue is bound to event type customer.merged"
    assert rows[placed.id].published_at is not None and rows[placed.id].parked_at is None
    assert [(p.message_id, p.event_type, p.reason) for p in outbox.parked_events(app.sessions)] == [
        (merged.id, "customer.merged", "no queue is bound to event type customer.merged")
    ]

    # A route is bound to the type now: the released row is relayed, once, and nothing else again.
    app.transport.declare(merged_bound)
    assert outbox.release_parked(app.sessions, [merged.id]) == 1
    assert relay.pending() == 1
    assert relay.relay_once() == 1
    assert relay.relay_once() == 0
    assert _drain(app.transport, merged_bound, merged_bound.queues[-1].name) == [merged.id]
    assert _drain(app.transport, app.topology, orders_queue) == []
    assert outbox.parked_events(app.sessions) == []


# -- the relay's side of the contract, with a publisher that answers like a transport


def _events_in(sessions: sessionmaker[Session], *types: str) -> list[str]:
    envelopes = [Envelope.new(t, {"n": i}, source="/crm") for i, t in enumerate(types)]
    with sessions() as session, session.begin():
        for envelope in envelopes:
            outbox.add_event(session, envelope)
    return [e.id for e in envelopes]


def test_parking_logs_once_bounds_the_reason_and_marks_the_rest(crm_sessions: sessionmaker[Session]) -> None:
    long_type = "customer." + "x" * 70  # the longest type the column holds
    ids = _events_in(crm_sessions, long_type, "order.placed", "customer.merged")
    calls: list[list[str]] = []

    def publish(events: Sequence[outbox.PendingEvent]) -> None:
        calls.append([e.message_id for e in events])
        unrouted = tuple(e.message_id for e in events if e.event_type != "order.placed")
        if unrouted:
            raise Unroutable("unroutable", message_ids=unrouted, system="test", operation="publish")

    relay = outbox.OutboxRelay(crm_sessions, publish)
    with structlog.testing.capture_logs() as logs:
        assert relay.relay_once() == 1
        assert relay.relay_once() == 0
    assert calls == [ids]  # the second call found nothing to publish
    parked = {p.message_id: p for p in outbox.parked_events(crm_sessions)}
    assert set(parked) == {ids[0], ids[2]}
    assert parked[ids[0]].reason == f"no queue is bound to event type {long_type}"
    assert len(outbox.park_reason("a." + "b" * 1000)) == outbox.MAX_PARK_REASON
    assert outbox.park_reason("a." + "b" * 1000).endswith("...[truncated]")
    warnings = [(entry["message_id"], entry["event_type"]) for entry in logs if entry["log_level"] == "warning"]
    assert warnings == [(ids[0], long_type), (ids[2], "customer.merged")]

    assert outbox.release_parked(crm_sessions, ["not-parked", ids[1]]) == 0  # published rows stay published
    assert outbox.release_parked(crm_sessions) == 2
    assert relay.pending() == 2
    assert relay.relay_once() == 0  # still no route: parked again, not published
    assert calls[-1] == [ids[0], ids[2]]
    assert len(outbox.parked_events(crm_sessions)) == 2 and relay.pending() == 0


def test_an_answer_about_other_messages_fails_the_batch_with_nothing_marked(
    crm_sessions: sessionmaker[Session],
) -> None:
    _events_in(crm_sessions, "order.placed", "order.placed")

    def confused(events: Sequence[outbox.PendingEvent]) -> None:
        raise Unroutable("unroutable", message_ids=("someone-else",), system="test", operation="publish")

    relay = outbox.OutboxRelay(crm_sessions, confused)
    with pytest.raises(Unroutable):
        relay.relay_once()
    assert relay.pending() == 2 and outbox.parked_events(crm_sessions) == []
