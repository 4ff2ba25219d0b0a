"""The transport contract, written once in ``TransportContract``, and the classes that run it on each transport.

Each transport's class overrides the ``transport`` fixture (after FastStream's shared broker test
cases) and adds what only that transport has. RabbitMQ runs on the real broker, the embedded
transport on SQLite (a file and in memory) and on PostgreSQL. One module, because test modules
cannot import each other under ``--import-mode=importlib``.

No test measures time: waits have generous limits only so that a broken transport fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import suppress
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions
import pytest

from canonical_model.envelope import Envelope
from canonical_model.errors import TransportError, Unroutable
from canonical_model.order import OrderLine, SalesOrder
from connectors.base import (
    DELIVERY_LIMIT_EXCEEDED,
    HEADER_ERROR_REASON,
    HEADER_ERROR_TYPE,
    HEADER_FAILED_AT,
    HEADER_FAILED_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    Topology,
    Transport,
)
from connectors.consumer import envelope_consumer
from connectors.embedded import EmbeddedTransport
from connectors.publishing import to_message
from connectors.rabbitmq import RabbitMQTransport
from connectors.rabbitmq.topology import queue_arguments
from connectors.registry import create_transport, transport_class
from connectors.topics import topic_matches
from tests.connectors.rabbit_helpers import rabbitmqctl
from tests.connectors.transport_helpers import WAIT, consuming, get_eventually, wait_for
from tests.tcp_proxy import TcpProxy


def message(routing_key: str, body: bytes, message_id: str, **headers: str | int) -> OutgoingMessage:
    return OutgoingMessage(routing_key=routing_key, body=body, message_id=message_id, headers=headers)


class Collector:
    """A delivery handler that acks and remembers every delivery, and says when it has ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.deliveries: list[Delivery] = []
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        delivery.ack()
        with self._lock:
            self.deliveries.append(delivery)
            if len(self.deliveries) >= self.expected:
                self.done.set()

    def wait(self) -> list[Delivery]:
        assert self.done.wait(WAIT), f"only {len(self.deliveries)} of {self.expected} delivered"
        return self.deliveries


def order_envelope(number: int) -> Envelope:
    order = SalesOrder(
        id=f"SO-{number:06d}",
        customer_id="C-1001",
        order_date=date(2025, 3, 14),
        lines=[OrderLine(product_id="MAT-100", quantity=Decimal("2"), unit_price=Decimal("19.90"))],
    )
    return Envelope.new("order.placed", order, source="/crm", subject="C-1001")


class TransportContract:
    """What every transport does. Subclasses provide ``transport`` (and clean up their own resources)."""

    @pytest.fixture
    def transport(self) -> Iterator[Transport]:
        raise NotImplementedError("a transport's test class provides this fixture")

    @pytest.fixture
    def topology(self, transport: Transport, unique_name: str) -> Iterator[Topology]:
        topology = Topology(
            queues=(
                QueueSpec(f"{unique_name}.orders", ("order.*",), delivery_limit=3),
                QueueSpec(f"{unique_name}.audit", ("order.#", "customer.created"), delivery_limit=3),
            ),
            exchange=f"{unique_name}.events",
            dead_letter_exchange=f"{unique_name}.dlx",
            dead_letter_queue=f"{unique_name}.dead_letter",
        )
        transport.declare(topology)
        yield topology
        transport.delete(topology)  # type: ignore[attr-defined]

    @staticmethod
    def orders(topology: Topology) -> str:
        return topology.queues[0].name

    @staticmethod
    def audit(topology: Topology) -> str:
        return topology.queues[1].name

    def test_declare_is_idempotent(self, transport: Transport, topology: Topology) -> None:
        transport.declare(topology)
        transport.publish([message("order.placed", b"1", "m-1")])
        transport.declare(topology)
        wait_for(lambda: transport.message_count(self.orders(topology)) == 1, "one message after redeclaring")

    def test_publish_consume_ack(self, transport: Transport, topology: Topology) -> None:
        transport.publish([message("order.placed", f"body {i}".encode(), f"m-{i}", trace=f"t{i}") for i in range(3)])
        collector = Collector(3)
        with consuming(transport, self.orders(topology), collector):
            deliveries = collector.wait()
        assert [d.body for d in deliveries] == [b"body 0", b"body 1", b"body 2"]
        first = deliveries[0]
        assert (first.message_id, first.routing_key, first.queue) == ("m-0", "order.placed", self.orders(topology))
        assert first.headers["trace"] == "t0"
        assert first.previous_deliveries == 0
        assert transport.message_count(self.orders(topology)) == 0
        assert transport.get(self.orders(topology)) is None

    def test_topic_routing_reaches_every_bound_queue(self, transport: Transport, topology: Topology) -> None:
        transport.publish(
            [
                message("order.placed", b"a", "m-a"),  # orders (order.*) and audit (order.#)
                message("order.line.added", b"b", "m-b"),  # audit only: * is exactly one word
                message("customer.created", b"c", "m-c"),  # audit only
            ]
        )
        wait_for(lambda: transport.message_count(self.audit(topology)) == 3, "three messages in audit")
        assert transport.message_count(self.orders(topology)) == 1
        assert transport.get(self.orders(topology)) is not None

    def test_unroutable_publish_raises_and_transport_still_works(
        self, transport: Transport, topology: Topology
    ) -> None:
        with pytest.raises(Unroutable, match="unroutable") as raised:
            transport.publish([message("nobody.listens.here", b"x", "m-x")])
        assert raised.value.message_ids == ("m-x",)
        transport.publish([message("order.placed", b"y", "m-y")])
        assert get_eventually(transport, self.orders(topology)).body == b"y"

    def test_a_batch_names_its_unroutable_messages_and_takes_the_others(
        self, transport: Transport, topology: Topology
    ) -> None:
        batch = [
            message("customer.merged", b"a", "m-a"),
            message("order.placed", b"b", "m-b"),
            message("nobody.listens.here", b"c", "m-c"),
            message("order.placed", b"d", "m-d"),
        ]
        with pytest.raises(Unroutable) as raised:
            transport.publish(batch)
        assert raised.value.message_ids == ("m-a", "m-c")
        assert "'customer.merged'" in str(raised.value) and "'nobody.listens.here'" in str(raised.value)
        # taken once each, before the error was raised
        wait_for(lambda: transport.message_count(self.orders(topology)) == 2, "two messages in orders")
        ids = []
        while (delivery := transport.get(self.orders(topology))) is not None:
            ids.append(delivery.message_id)
            delivery.ack()
        assert ids == ["m-b", "m-d"]
        assert transport.message_count(topology.dead_letter_queue) == 0

    def test_requeue_counts_previous_deliveries(self, transport: Transport, topology: Topology) -> None:
        transport.publish([message("order.placed", b"again", "m-1")])
        seen = []
        for _ in range(3):
            delivery = get_eventually(transport, self.orders(topology))
            seen.append(delivery.previous_deliveries)
            if len(seen) < 3:
                delivery.requeue()
            else:
                delivery.ack()
        assert seen == [0, 1, 2]
        assert transport.get(self.orders(topology)) is None

    def test_delivery_limit_moves_message_to_dead_letter_queue(self, transport: Transport, topology: Topology) -> None:
        transport.publish([message("order.placed", b"poison", "m-poison")])
        seen = []
        while True:  # limit 3: delivered 4 times, the fourth requeue exceeds it
            delivery = transport.get(self.orders(topology))
            if delivery is None:
                break
            seen.append(delivery.previous_deliveries)
            delivery.requeue()
            assert len(seen) <= 4
        assert seen == [0, 1, 2, 3]
        dead = get_eventually(transport, topology.dead_letter_queue)
        assert dead.body == b"poison"
        assert dead.headers[HEADER_ERROR_REASON] == DELIVERY_LIMIT_EXCEEDED
        assert dead.headers[HEADER_FAILED_QUEUE] == self.orders(topology)
        dead.ack()

    def test_dead_letter_keeps_body_headers_and_reason(self, transport: Transport, topology: Topology) -> None:
        transport.publish([message("order.placed", b"\x00binary\xff", "m-dl", trace="abc", attempt=7)])
        delivery = get_eventually(transport, self.orders(topology))
        delivery.dead_letter("customer C-9 is blocked", "BusinessRejection")
        dead = get_eventually(transport, topology.dead_letter_queue)
        assert dead.body == b"\x00binary\xff"
        assert dead.message_id == "m-dl"
        assert dead.headers["trace"] == "abc"
        assert dead.headers["attempt"] == 7
        assert dead.headers[HEADER_ERROR_REASON] == "customer C-9 is blocked"
        assert dead.headers[HEADER_ERROR_TYPE] == "BusinessRejection"
        assert dead.headers[HEADER_FAILED_QUEUE] == self.orders(topology)
        assert dead.headers[HEADER_ORIGINAL_ROUTING_KEY] == "order.placed"
        assert datetime.fromisoformat(str(dead.headers[HEADER_FAILED_AT])).tzinfo is not None
        dead.ack()
        assert transport.get(self.orders(topology)) is None

    @pytest.fixture
    def subscribed(self, transport: Transport, unique_name: str) -> Iterator[Topology]:
        """A topology with a dead-letter subscriber (delivery limit 1) next to the dead letter queue."""
        name = f"{unique_name}s"
        topology = Topology(
            queues=(QueueSpec(f"{name}.orders", ("order.*",), delivery_limit=3),),
            dead_letter_subscribers=(QueueSpec(f"{name}.failures", (), delivery_limit=1),),
            exchange=f"{name}.events",
            dead_letter_exchange=f"{name}.dlx",
            dead_letter_queue=f"{name}.dead_letter",
        )
        transport.declare(topology)
        yield topology
        transport.delete(topology)  # type: ignore[attr-defined]

    def test_every_dead_letter_subscriber_gets_its_own_copy(self, transport: Transport, subscribed: Topology) -> None:
        transport.publish([message("order.placed", b"poison", "m-p", trace="t")])
        get_eventually(transport, self.orders(subscribed)).dead_letter("no such customer", "InvalidMessage")
        failures = subscribed.dead_letter_subscribers[0].name
        for queue in (subscribed.dead_letter_queue, failures):
            copy = get_eventually(transport, queue)
            assert (copy.body, copy.message_id, copy.routing_key) == (b"poison", "m-p", "order.placed")
            assert copy.headers[HEADER_ERROR_REASON] == "no such customer"
            assert copy.headers[HEADER_FAILED_QUEUE] == self.orders(subscribed)
            assert copy.headers["trace"] == "t"
            copy.ack()

    def test_a_subscribers_own_dead_letters_go_to_the_dead_letter_queue_only(
        self, transport: Transport, subscribed: Topology
    ) -> None:
        failures = subscribed.dead_letter_subscribers[0].name
        transport.publish([message("order.placed", b"a", "m-a"), message("order.placed", b"b", "m-b")])
        for _ in range(2):
            get_eventually(transport, self.orders(subscribed)).dead_letter("first death", "InvalidMessage")
        # the subscriber cannot handle them: one permanently, one past its delivery limit (1)
        get_eventually(transport, failures).dead_letter("the subscriber failed", "CrmError")
        second = get_eventually(transport, failures)
        second.requeue("crm down")
        get_eventually(transport, failures).requeue("crm down")
        bodies = []
        for _ in range(4):  # the two first deaths and the subscriber's two
            dead = get_eventually(transport, subscribed.dead_letter_queue)
            bodies.append((dead.body, dead.headers[HEADER_ERROR_REASON], dead.headers[HEADER_FAILED_QUEUE]))
            dead.ack()
        assert sorted(bodies) == sorted(
            [
                (b"a", "first death", self.orders(subscribed)),
                (b"b", "first death", self.orders(subscribed)),
                (b"a", "the subscriber failed", failures),
                (b"b", "delivery limit exceeded; last error: crm down", failures),
            ]
        )
        assert transport.get(failures) is None, "a subscriber's dead letter never comes back to it"
        assert transport.get(subscribed.dead_letter_queue) is None

    def test_single_consumer_sees_queue_order(self, transport: Transport, topology: Topology) -> None:
        for start in range(0, 200, 50):
            transport.publish([message("order.placed", str(i).encode(), f"m-{i}") for i in range(start, start + 50)])
        collector = Collector(200)
        with consuming(transport, self.orders(topology), collector, prefetch=25):
            deliveries = collector.wait()
        assert [int(d.body) for d in deliveries] == list(range(200))

    def test_stop_ends_an_idle_consumer(self, transport: Transport, topology: Topology) -> None:
        with consuming(transport, self.orders(topology), Collector(1)):
            pass  # ``consuming`` asserts that the thread ended after stop

    def test_concurrent_publishers_lose_nothing(self, transport: Transport, topology: Topology) -> None:
        errors: list[BaseException] = []

        def publish_some(thread: int) -> None:
            try:
                for batch in range(10):
                    transport.publish([message("order.placed", b"x", f"t{thread}-b{batch}-m{i}") for i in range(10)])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=publish_some, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert not errors
        collector = Collector(400)
        with consuming(transport, self.orders(topology), collector, prefetch=50):
            deliveries = collector.wait()
        expected = {f"t{t}-b{b}-m{i}" for t in range(4) for b in range(10) for i in range(10)}
        assert {d.message_id for d in deliveries} == expected

    def test_invalid_messages_are_dead_lettered_while_the_route_keeps_consuming(
        self, transport: Transport, topology: Topology
    ) -> None:
        valid = order_envelope(1)
        transport.publish(
            [
                message("order.placed", b"{this is not json", "m-not-json"),
                message("order.placed", json.dumps({"hello": "world"}).encode(), "m-not-envelope"),
                to_message(valid),
            ]
        )
        handled: list[Envelope] = []
        got_valid = threading.Event()

        def handle(envelope: Envelope) -> None:
            SalesOrder.model_validate(envelope.data)
            handled.append(envelope)
            got_valid.set()

        with consuming(transport, self.orders(topology), envelope_consumer(handle)):
            assert got_valid.wait(WAIT)
        assert [e.id for e in handled] == [valid.id]
        dead = [get_eventually(transport, topology.dead_letter_queue) for _ in range(2)]
        for delivery in dead:
            delivery.ack()
        assert sorted(d.message_id or "" for d in dead) == ["m-not-envelope", "m-not-json"]
        for delivery in dead:
            assert delivery.headers[HEADER_ERROR_TYPE] == "InvalidMessage"
            assert "not a valid envelope" in str(delivery.headers[HEADER_ERROR_REASON])
            assert delivery.headers[HEADER_FAILED_QUEUE] == self.orders(topology)
        assert transport.message_count(self.orders(topology)) == 0

    def test_a_failing_handler_does_not_stop_the_consumer(self, transport: Transport, topology: Topology) -> None:
        transport.publish([message("order.placed", b"bad", "m-bad"), message("order.placed", b"good", "m-good")])
        seen: list[tuple[bytes, int]] = []
        done = threading.Event()

        def handler(delivery: Delivery) -> None:
            seen.append((delivery.body, delivery.previous_deliveries))
            if delivery.body == b"bad" and delivery.previous_deliveries == 0:
                raise RuntimeError("a bug in the handler, nothing settled")
            delivery.ack()
            if {body for body, _ in seen} == {b"bad", b"good"} and (b"bad", 1) in seen:
                done.set()

        with consuming(transport, self.orders(topology), handler):
            assert done.wait(WAIT), seen
        assert (b"bad", 0) in seen
        assert (b"bad", 1) in seen
        assert (b"good", 0) in seen

    def test_get_count_and_purge(self, transport: Transport, topology: Topology) -> None:
        assert transport.get(self.orders(topology)) is None
        transport.publish([message("order.placed", b"p", f"m-{i}") for i in range(5)])
        wait_for(lambda: transport.message_count(self.orders(topology)) == 5, "five messages")
        assert transport.purge(self.orders(topology)) == 5
        assert transport.message_count(self.orders(topology)) == 0

    def test_a_delivery_is_settled_once(self, transport: Transport, topology: Topology) -> None:
        transport.publish([message("order.placed", b"once", "m-once")])
        delivery = get_eventually(transport, self.orders(topology))
        delivery.ack()
        with pytest.raises(RuntimeError, match="already settled"):
            delivery.ack()

    def test_unknown_queue_is_a_transport_error(self, transport: Transport, topology: Topology) -> None:
        with pytest.raises(TransportError):
            transport.message_count(f"{topology.exchange}.no-such-queue")


# -- RabbitMQ


@pytest.mark.rabbitmq
class TestRabbitMQTransport(TransportContract):
    @pytest.fixture
    def transport(self, rabbitmq_url: str, unique_name: str) -> Iterator[Transport]:
        transport = RabbitMQTransport(rabbitmq_url, reconnect_delay=0.1, client_name=f"esb-test-{unique_name}")
        yield transport
        transport.close()

    def test_queues_are_quorum_queues_with_the_declared_arguments(
        self, rabbitmq_url: str, transport: Transport, topology: Topology
    ) -> None:
        spec = topology.queues[0]
        expected = queue_arguments(spec, topology)
        assert expected == {
            "x-queue-type": "quorum",
            "x-delivery-limit": 3,
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-single-active-consumer": True,
        }
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        try:
            channel = connection.channel()
            # The broker compares every argument of a redeclaration with the queue's own:
            # the same ones pass, any other value of any of them is refused.
            channel.queue_declare(spec.name, durable=True, arguments=expected)
            wrong: dict[str, Any] = {
                "x-queue-type": "classic",
                "x-delivery-limit": 99,
                "x-dead-letter-exchange": "elsewhere",
                "x-dead-letter-strategy": "at-most-once",
                "x-overflow": "drop-head",
                "x-single-active-consumer": False,
            }
            for argument, value in wrong.items():
                with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                    channel.queue_declare(spec.name, durable=True, arguments={**expected, argument: value})
                assert refused.value.reply_code == 406
                assert f"inequivalent arg '{argument}'" in refused.value.reply_text
                channel = connection.channel()
        finally:
            connection.close()
        # a second opinion: the broker's own tool
        listed = rabbitmqctl("list_queues", "name", "type", "arguments", "--formatter", "json", "-q")
        queues = {queue["name"]: queue for queue in json.loads(listed)}
        assert queues[spec.name]["type"] == "quorum"
        assert queues[topology.dead_letter_queue]["type"] == "quorum"

    def test_returns_are_told_apart_while_batches_interleave_in_a_small_confirm_window(
        self, rabbitmq_url: str, transport: Transport, topology: Topology
    ) -> None:
        narrow = RabbitMQTransport(rabbitmq_url, confirm_window=3)
        narrow.declare(topology)
        named: dict[int, tuple[str, ...]] = {}

        def publish(worker: int) -> None:
            batch = [
                message("nobody.listens.here" if i % 3 == 0 else "order.placed", b"x", f"w{worker}-{i}")
                for i in range(30)
            ]
            try:
                narrow.publish(batch)
            except Unroutable as exc:
                named[worker] = exc.message_ids

        try:
            threads = [threading.Thread(target=publish, args=(worker,)) for worker in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
        finally:
            narrow.close()
        assert named == {w: tuple(f"w{w}-{i}" for i in range(0, 30, 3)) for w in range(3)}
        assert transport.message_count(self.orders(topology)) == 60  # each routable message once

    def test_a_batch_with_a_return_and_a_nack_fails_as_a_whole(
        self, rabbitmq_url: str, transport: Transport, topology: Topology
    ) -> None:
        # A queue that holds one message and refuses more: the broker nacks the second order.full.
        full = f"{topology.exchange}.full"
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        try:
            channel = connection.channel()
            channel.queue_declare(full, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
            channel.queue_bind(full, topology.exchange, routing_key="order.full")
            batch = [
                message("customer.merged", b"a", "m-a"),
                message("order.full", b"b", "m-b"),
                message("order.full", b"c", "m-c"),
            ]
            # a TransportError, not Unroutable: the caller marks nothing and publishes the whole batch again
            with pytest.raises(TransportError, match=r"basic\.nack"):
                transport.publish(batch)
        finally:
            with suppress(Exception):
                connection.channel().queue_delete(full)
            connection.close()

    def test_the_brokers_own_dead_letters_reach_the_subscriber_with_x_death(
        self, rabbitmq_url: str, transport: Transport, subscribed: Topology
    ) -> None:
        failures = subscribed.dead_letter_subscribers[0]
        assert queue_arguments(failures, subscribed)["x-dead-letter-exchange"] == subscribed.final_dead_letter_exchange
        transport.publish([message("order.placed", b"rejected by someone", "m-r")])
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        try:
            channel = connection.channel()
            # a route queue has a single active consumer: the broker refuses basic.get on it
            for method, _, _ in channel.consume(self.orders(subscribed), inactivity_timeout=WAIT):
                assert method is not None, "the message did not arrive"
                channel.basic_reject(method.delivery_tag, requeue=False)
                break
            channel.cancel()
        finally:
            connection.close()
        copy = get_eventually(transport, failures.name)
        assert copy.body == b"rejected by someone" and copy.routing_key == "order.placed"
        assert HEADER_ERROR_REASON not in copy.headers
        assert [(d.reason, d.queue, d.count) for d in copy.deaths] == [("rejected", self.orders(subscribed), 1)]
        assert copy.deaths[0].time is not None and copy.deaths[0].time.tzinfo is not None
        copy.ack()

    def test_publisher_and_consumer_recover_from_a_lost_connection(self, rabbitmq_url: str, topology: Topology) -> None:
        broker = urlsplit(rabbitmq_url)
        proxy = TcpProxy((broker.hostname or "127.0.0.1", broker.port or 5672)).start()
        through_proxy = broker._replace(netloc=f"{broker.username}:{broker.password}@127.0.0.1:{proxy.port}")
        flaky = RabbitMQTransport(urlunsplit(through_proxy), reconnect_delay=0.1)
        try:
            flaky.declare(topology)
            collector = Collector(2)
            with consuming(flaky, self.orders(topology), collector):
                flaky.publish([message("order.placed", b"before", "m-before")])
                wait_for(lambda: len(collector.deliveries) == 1, "the first message")
                assert proxy.drop() >= 2  # at least the publisher's and the consumer's connections
                # A publish that meets the dead connection raises TransportError and the caller
                # publishes again, as the outbox relay does; the next call has a new connection.
                for attempt in range(5):
                    try:
                        flaky.publish([message("order.placed", b"after", "m-after")])
                        break
                    except TransportError:
                        if attempt == 4:
                            raise
                deliveries = collector.wait()  # the consumer reconnected by itself
            assert deliveries[-1].body == b"after"
        finally:
            flaky.close()
            proxy.cut()

    def test_consumer_comes_back_after_the_broker_closes_its_channel(
        self, transport: Transport, rabbitmq_url: str, topology: Topology
    ) -> None:
        """A dead-letter publish to a missing exchange makes the broker close the consumer's channel
        (not the connection); the consumer must notice and reconnect instead of idling forever."""
        transport.declare(topology)
        good: list[bytes] = []
        failures: list[str] = []

        def handler(delivery: Delivery) -> None:
            if delivery.body == b"poison":
                try:
                    delivery.dead_letter("bad", "InvalidMessage")
                except TransportError as exc:
                    failures.append(str(exc))
                    raise
            else:
                good.append(delivery.body)
                delivery.ack()

        with consuming(transport, self.orders(topology), handler):
            connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
            try:
                connection.channel().exchange_delete(topology.dead_letter_exchange)
            finally:
                connection.close()
            transport.publish([message("order.placed", b"poison", "m-poison")])
            wait_for(lambda: bool(failures), "the refused dead-letter publish")
            transport.declare(topology)  # the dead letter exchange is back
            transport.publish([message("order.placed", f"good-{n}".encode(), f"m-{n}") for n in range(3)])
            wait_for(lambda: len(good) == 3, "the good messages after the channel was closed")
        assert good == [b"good-0", b"good-1", b"good-2"]
        dead = get_eventually(transport, topology.dead_letter_queue)  # the poison made it on a later delivery
        assert dead.body == b"poison"
        dead.ack()


# -- embedded


_PUBLISH_AND_HANG = textwrap.dedent(
    """
    import json, sys, time
    from connectors.base import OutgoingMessage, QueueSpec, Topology
    from connectors.embedded import EmbeddedTransport

    url, names = sys.argv[1], json.loads(sys.argv[2])
    topology = Topology(
        queues=tuple(QueueSpec(name, tuple(bindings), limit) for name, bindings, limit in names["queues"]),
        exchange=names["exchange"],
        dead_letter_exchange=names["dlx"],
        dead_letter_queue=names["dlq"],
    )
    transport = EmbeddedTransport(url)
    transport.declare(topology)
    transport.publish([OutgoingMessage("order.placed", b"survivor", "m-survivor")])
    print("published", flush=True)
    time.sleep(600)
    """
)


class EmbeddedContract(TransportContract):
    """The contract on a database file, plus what only the embedded transport has: leases, other processes."""

    @pytest.fixture
    def embedded_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def transport(self, embedded_url: str) -> Iterator[Transport]:
        transport = EmbeddedTransport(embedded_url, poll_interval=0.02)
        yield transport
        transport.close()

    def test_an_expired_lease_makes_the_message_ready_again(self, embedded_url: str, topology: Topology) -> None:
        short = EmbeddedTransport(embedded_url, lease_seconds=0.2)
        short.declare(topology)  # every process declares before it publishes: that names the exchange
        try:
            short.publish([message("order.placed", b"leased", "m-leased")])
            first = get_eventually(short, self.orders(topology))
            assert short.message_count(self.orders(topology)) == 0  # leased: not ready
            second = get_eventually(short, self.orders(topology))  # the lease ran out (its consumer "died")
            assert (second.body, second.previous_deliveries) == (b"leased", 1)
            with pytest.raises(TransportError, match="lease"):
                first.ack()  # too late: the message belongs to the second delivery now
            second.ack()
            assert short.get(self.orders(topology)) is None
        finally:
            short.close()

    def test_a_message_that_keeps_killing_its_consumer_is_dead_lettered(
        self, embedded_url: str, topology: Topology
    ) -> None:
        short = EmbeddedTransport(embedded_url, lease_seconds=0.05)
        short.declare(topology)
        try:
            short.publish([message("order.placed", b"killer", "m-killer")])
            taken: list[int] = []

            def take_and_die() -> bool:  # never settles, like a consumer killed by the message
                delivery = short.get(self.orders(topology))
                if delivery is not None:
                    taken.append(delivery.previous_deliveries)
                return short.message_count(topology.dead_letter_queue) == 1

            wait_for(take_and_die, "the message in the dead letter queue")
            assert taken == [0, 1, 2, 3]  # delivery limit 3
            dead = get_eventually(short, topology.dead_letter_queue)
            assert dead.body == b"killer"
            assert dead.headers[HEADER_ERROR_REASON] == DELIVERY_LIMIT_EXCEEDED
            dead.ack()
        finally:
            short.close()

    def test_a_message_published_by_a_killed_process_is_delivered_after_restart(
        self, embedded_url: str, topology: Topology
    ) -> None:
        names = {
            "queues": [[spec.name, list(spec.bindings), spec.delivery_limit] for spec in topology.queues],
            "exchange": topology.exchange,
            "dlx": topology.dead_letter_exchange,
            "dlq": topology.dead_letter_queue,
        }
        child = subprocess.Popen(
            [sys.executable, "-c", _PUBLISH_AND_HANG, embedded_url, json.dumps(names)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "published"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(WAIT)
        assert child.returncode == -signal.SIGKILL
        restarted = EmbeddedTransport(embedded_url)
        try:
            delivery = get_eventually(restarted, self.orders(topology))
            assert (delivery.body, delivery.message_id, delivery.previous_deliveries) == (b"survivor", "m-survivor", 0)
            delivery.ack()
        finally:
            restarted.close()


class TestEmbeddedOnSQLite(EmbeddedContract):
    @pytest.fixture
    def embedded_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'esb.db'}"


@pytest.mark.postgres
class TestEmbeddedOnPostgreSQL(EmbeddedContract):
    @pytest.fixture
    def embedded_url(self, postgres_url: str) -> str:
        return postgres_url


class TestEmbeddedInMemory(TransportContract):
    """``sqlite://``: one process, nothing kept; for tests that need a transport and no files."""

    @pytest.fixture
    def transport(self) -> Iterator[Transport]:
        transport = EmbeddedTransport("sqlite://", poll_interval=0.02)
        yield transport
        transport.close()


@pytest.mark.parametrize(
    ("pattern", "routing_key", "matches"),
    [
        ("order.placed", "order.placed", True),
        ("order.*", "order.placed", True),
        ("order.*", "order.line.added", False),
        ("order.*", "order", False),
        ("order.#", "order", True),
        ("order.#", "order.line.added", True),
        ("#", "anything.at.all", True),
        ("#.added", "order.line.added", True),
        ("*.added", "order.line.added", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("customer.created", "customer.updated", False),
    ],
)
def test_topic_matching_follows_rabbitmq(pattern: str, routing_key: str, matches: bool) -> None:
    assert topic_matches(pattern, routing_key) is matches


def test_the_registry_finds_both_transports() -> None:
    assert transport_class("rabbitmq") is RabbitMQTransport
    assert transport_class("embedded") is EmbeddedTransport
    assert isinstance(create_transport("rabbitmq"), RabbitMQTransport)  # connects only when used
