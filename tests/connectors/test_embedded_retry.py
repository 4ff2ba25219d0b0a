"""The embedded transport's delayed retry, give-back and delivery count, and its schema upgrade.

``Delivery.retry(delay, last_error)``: the same row is ready again ``delay`` seconds later, as try
``attempts + 1`` with the last error in its headers (bounded as a dead-letter copy's), and it is not
a redelivery: the delivery limit does not see it. A database file made by the previous version
(no ``shards``, ``exclusive``, ``consumer_*`` columns) is upgraded when the transport declares.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    inspect,
)

from canonical_model.errors import TransportError
from connectors.base import (
    DEAD_LETTER_HEADERS_MAX,
    HEADER_ATTEMPTS,
    HEADER_DROPPED_HEADERS,
    HEADER_ERROR_REASON,
    HEADER_LAST_ERROR,
    LAST_ERROR_MAX,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    Topology,
)
from connectors.embedded import EmbeddedTransport
from connectors.embedded.store import json_size
from tests.connectors.embedded_helpers import consuming, get_eventually, topology, wait_for


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'esb.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def transport(url: str) -> Iterator[EmbeddedTransport]:
    transport = EmbeddedTransport(url, poll_interval=0.02)
    yield transport
    transport.close()


@pytest.fixture
def orders(transport: EmbeddedTransport, unique_name: str) -> str:
    transport.declare(topology(unique_name))
    return f"{unique_name}.orders"


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[EmbeddedTransport]:
    """A transport on SQLite only, for what does not depend on the database."""
    transport = EmbeddedTransport(f"sqlite:///{tmp_path / 'lite.db'}", poll_interval=0.02)
    yield transport
    transport.close()


@pytest.fixture
def lite_orders(lite: EmbeddedTransport, unique_name: str) -> str:
    lite.declare(topology(unique_name))
    return f"{unique_name}.orders"


def test_a_retry_makes_the_same_row_ready_later_as_the_next_try(transport: EmbeddedTransport, orders: str) -> None:
    transport.publish([OutgoingMessage("order.placed", b"again", "m-1", {"trace": "t1"})])
    first = get_eventually(transport, orders)
    assert (first.attempts, first.previous_deliveries) == (0, 0)
    first.retry(3600, "erp down")
    assert first.settled
    assert transport.get(orders) is None, "not before its delay"
    assert transport.message_count(orders) == 0

    transport.publish([OutgoingMessage("order.placed", b"other", "m-2")])
    second = get_eventually(transport, orders)
    assert second.message_id == "m-2", "the messages behind a retried one go on"
    second.retry(0.2, "still down")
    third = get_eventually(transport, orders)
    assert (third.message_id, third.attempts, third.previous_deliveries) == ("m-2", 1, 0)
    assert third.headers[HEADER_ATTEMPTS] == 1 and third.headers[HEADER_LAST_ERROR] == "still down"
    assert third.claimed.id == second.claimed.id, "the same row, not a copy"  # type: ignore[attr-defined]
    third.retry(0, "down again")
    fourth = get_eventually(transport, orders)
    assert (fourth.attempts, fourth.headers[HEADER_LAST_ERROR]) == (2, "down again")
    fourth.ack()
    assert transport.get(orders) is None  # m-1 still waits for its hour


def test_retries_do_not_count_towards_the_delivery_limit(lite: EmbeddedTransport, lite_orders: str) -> None:
    lite.publish([OutgoingMessage("order.placed", b"flaky", "m-flaky")])
    seen = []
    for _ in range(8):  # the queue's delivery limit is 3
        delivery = get_eventually(lite, lite_orders)
        seen.append((delivery.previous_deliveries, delivery.attempts))
        delivery.retry(0, "timeout")
    assert seen == [(0, n) for n in range(8)]
    assert lite.message_count(f"{lite_orders.rsplit('.', 1)[0]}.dead_letter") == 0


def test_a_retried_redelivery_keeps_its_count_and_a_given_back_message_is_not_counted(
    url: str, orders: str, unique_name: str
) -> None:
    short = EmbeddedTransport(url, lease_seconds=0.3)
    try:
        short.declare(topology(unique_name))
        short.publish([OutgoingMessage("order.placed", b"x", "m-x")])
        get_eventually(short, orders)  # its consumer "dies": the lease runs out
        redelivered = get_eventually(short, orders)
        assert redelivered.previous_deliveries == 1
        redelivered.retry(0, "timeout")
        after_retry = get_eventually(short, orders)
        assert (after_retry.previous_deliveries, after_retry.attempts) == (1, 1)
        after_retry.return_unprocessed()
        given_back = get_eventually(short, orders)
        assert (given_back.previous_deliveries, given_back.attempts) == (1, 1)
        given_back.requeue("boom")
        assert get_eventually(short, orders).previous_deliveries == 2
    finally:
        short.close()


def test_retry_headers_stay_within_the_dead_letter_bound(lite: EmbeddedTransport, lite_orders: str) -> None:
    big = {"a": "a" * 90_000, "b": "b" * 40_000, "c": 7, HEADER_ATTEMPTS: "junk"}
    lite.publish([OutgoingMessage("order.placed", b"x", "m-big", big)])
    delivery = get_eventually(lite, lite_orders)
    assert delivery.attempts == 0, "a publisher's junk count is no count"
    delivery.retry(0, "e" * 300_000)
    again = get_eventually(lite, lite_orders)
    headers = dict(again.headers)
    assert sum(json_size(key, value) for key, value in headers.items()) <= DEAD_LETTER_HEADERS_MAX
    assert len(str(headers[HEADER_LAST_ERROR])) <= LAST_ERROR_MAX
    assert headers[HEADER_ATTEMPTS] == 1 and again.attempts == 1
    assert "a" not in headers and headers["b"] == "b" * 40_000 and headers["c"] == 7
    assert "1 header(s)" in str(headers[HEADER_DROPPED_HEADERS])
    again.ack()


@pytest.mark.parametrize("delay", [-1.0, float("nan"), float("inf")])
def test_a_retry_delay_is_a_finite_number_of_seconds(lite: EmbeddedTransport, lite_orders: str, delay: float) -> None:
    lite.publish([OutgoingMessage("order.placed", b"x", "m-x")])
    delivery = get_eventually(lite, lite_orders)
    with pytest.raises(ValueError, match="finite"):
        delivery.retry(delay, "e")
    assert not delivery.settled
    delivery.ack()


def test_the_consume_loop_goes_on_while_a_message_waits_for_its_retry(
    lite: EmbeddedTransport, lite_orders: str
) -> None:
    lite.publish([OutgoingMessage("order.placed", f"{i}".encode(), f"m-{i}") for i in range(3)])
    seen: list[tuple[str | None, int]] = []
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        seen.append((delivery.message_id, delivery.attempts))
        if delivery.message_id == "m-0" and delivery.attempts == 0:
            delivery.retry(0.3, "erp down")
        else:
            delivery.ack()
        if len(seen) == 4:
            done.set()

    with consuming(lite, lite_orders, handler):
        assert done.wait(30), seen
    assert seen == [("m-0", 0), ("m-1", 0), ("m-2", 0), ("m-0", 1)]


# -- a database made by the previous version


def _old_schema() -> MetaData:
    """The transport's tables as the previous version created them (before shards and consumer leases)."""
    old = MetaData()
    Table("esb_exchanges", old, Column("name", String(255), primary_key=True), Column("kind", String(16)))
    Table(
        "esb_queues",
        old,
        Column("name", String(255), primary_key=True),
        Column("delivery_limit", Integer, nullable=True),
        Column("dead_letter_exchange", String(255), nullable=True),
    )
    Table(
        "esb_bindings",
        old,
        Column("exchange", String(255), primary_key=True),
        Column("queue", String(255), primary_key=True),
        Column("pattern", String(255), primary_key=True),
    )
    Table(
        "esb_messages",
        old,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("queue", String(255), nullable=False),
        Column("routing_key", String(255), nullable=False),
        Column("message_id", String(255), nullable=True),
        Column("content_type", String(255), nullable=False),
        Column("headers", JSON, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("deliveries", Integer, nullable=False, default=0),
        Column("lease_until", Double, nullable=True),
        Column("lease_token", String(32), nullable=True),
        Column("published_at", Double, nullable=False),
        Index("ix_esb_messages_queue_id", "queue", "id"),
    )
    return old


def test_a_database_of_the_previous_version_is_upgraded_at_declare(url: str, unique_name: str) -> None:
    old = _old_schema()
    engine = create_engine(url)
    old.create_all(engine)
    orders = f"{unique_name}.orders"
    with engine.begin() as conn:
        conn.execute(insert(old.tables["esb_exchanges"]), [{"name": f"{unique_name}.events", "kind": "topic"}])
        conn.execute(
            insert(old.tables["esb_queues"]),
            [{"name": orders, "delivery_limit": 3, "dead_letter_exchange": f"{unique_name}.dlx"}],
        )
        conn.execute(
            insert(old.tables["esb_bindings"]),
            [{"exchange": f"{unique_name}.events", "queue": orders, "pattern": "order.*"}],
        )
        conn.execute(
            insert(old.tables["esb_messages"]),
            [
                {
                    "queue": orders,
                    "routing_key": "order.placed",
                    "message_id": "m-old",
                    "content_type": "application/json",
                    "headers": {"trace": "t"},
                    "body": b"queued before the upgrade",
                    "deliveries": 0,
                    "published_at": 0.0,
                }
            ],
        )
    assert "shards" not in {column["name"] for column in inspect(engine).get_columns("esb_queues")}
    engine.dispose()

    spec = QueueSpec(orders, ("order.*",), delivery_limit=3, shards=1)
    sharded = QueueSpec(f"{unique_name}.updates", ("customer.*",), shards=2)
    new_topology = Topology(
        queues=(spec, sharded),
        exchange=f"{unique_name}.events",
        dead_letter_exchange=f"{unique_name}.dlx",
        dead_letter_queue=f"{unique_name}.dead_letter",
    )
    transport = EmbeddedTransport(url, poll_interval=0.02)
    try:
        transport.declare(new_topology)
        transport.declare(new_topology)  # idempotent, and a second transport finds the columns there
        EmbeddedTransport(url).declare(new_topology)
        columns = {column["name"] for column in inspect(transport._engine).get_columns("esb_queues")}
        assert {"shards", "exclusive", "consumer_token", "consumer_until"} <= columns

        old_message = get_eventually(transport, orders)
        assert (old_message.body, old_message.headers, old_message.previous_deliveries) == (
            b"queued before the upgrade",
            {"trace": "t"},
            0,
        )
        old_message.retry(0, "after the upgrade")
        retried = get_eventually(transport, orders)
        assert retried.attempts == 1
        retried.ack()
        transport.publish([OutgoingMessage("customer.updated", b"{}", "m-new", partition_key="C-1")])
        counts = [transport.message_count(name) for name in sharded.queue_names]
        assert sorted(counts) == [0, 1]
        received: list[Delivery] = []
        with consuming(transport, orders, received.append):
            transport.publish([OutgoingMessage("order.placed", b"new", "m-consumed")])
            wait_for(lambda: bool(received), "the new message through the consume loop")
        assert received[0].message_id == "m-consumed"
    finally:
        transport.close()


def test_a_sharded_group_is_not_a_queue_to_consume_but_tools_see_all_its_shards(
    lite: EmbeddedTransport, unique_name: str
) -> None:
    group = f"{unique_name}.orders"
    lite.declare(topology(unique_name, QueueSpec(group, ("order.*",), shards=3)))
    with pytest.raises(TransportError, match="3 shards"):
        lite.consume(group, lambda d: None, stop=threading.Event())
    assert lite.get(group) is None
    lite.publish([OutgoingMessage("order.placed", b"x", f"m-{n}", partition_key=f"C-{n}") for n in range(6)])
    assert lite.message_count(group) == 6
    first = lite.get(group)
    assert first is not None and first.message_id == "m-0" and first.queue.startswith(f"{group}.")
    first.ack()
    assert lite.purge(group) == 5 and lite.message_count(group) == 0


def test_headers_of_a_retry_are_json_of_plain_values(lite: EmbeddedTransport, lite_orders: str) -> None:
    lite.publish([OutgoingMessage("order.placed", b"x", "m-x", {"n": 1})])
    get_eventually(lite, lite_orders).retry(0, "ü" * 10)
    headers = get_eventually(lite, lite_orders).headers
    assert json.loads(json.dumps(dict(headers))) == {"n": 1, HEADER_ATTEMPTS: 1, HEADER_LAST_ERROR: "ü" * 10}


def test_a_dead_letter_subscriber_gets_the_copy_without_the_routes_try_count(
    lite: EmbeddedTransport, unique_name: str
) -> None:
    """A retried message dead-lettered after its tries: the subscriber's copy starts at try 0 (it used to
    carry the route's count, so a subscriber on a schedule no longer than the route's gave up at once)."""
    failures = QueueSpec(f"{unique_name}.failures", ())
    lite.declare(topology(unique_name, subscribers=(failures,)))
    orders = f"{unique_name}.orders"
    lite.publish([OutgoingMessage("order.placed", b"poison", "m-1")])
    get_eventually(lite, orders).retry(0.1, "erp down")
    again = get_eventually(lite, orders)
    assert again.attempts == 1
    again.dead_letter("retries exhausted after 2 tries; last error: erp down", "RetriesExhausted")
    copy = get_eventually(lite, failures.name)
    assert (copy.attempts, HEADER_ATTEMPTS in copy.headers) == (0, False)
    assert str(copy.headers[HEADER_ERROR_REASON]).startswith("retries exhausted after 2 tries")
