"""Delayed retry on RabbitMQ (``Delivery.retry``): a confirmed copy through a TTL step queue, back to the
queue (shard) it came from, as try ``attempts + 1``; the original acked. Real broker, one namespace per test.

Step delays are short (0.3 s) so the tests stay quick; the mechanism is the same for minutes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from canonical_model.errors import TransportError
from connectors.base import (
    HEADER_ATTEMPTS,
    HEADER_ERROR_REASON,
    HEADER_FAILED_QUEUE,
    HEADER_LAST_ERROR,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_RETRY_DELAY,
    Delivery,
    QueueSpec,
    Topology,
)
from connectors.rabbitmq import RabbitMQTransport
from connectors.rabbitmq.topology import retry_binding, retry_queue_arguments
from tests.connectors.rabbit_helpers import WAIT, consuming, declared, message, topology_of, wait_for

pytestmark = pytest.mark.rabbitmq

STEP = 0.3


@pytest.fixture
def transport(rabbitmq_url: str, unique_name: str) -> Iterator[RabbitMQTransport]:
    transport = RabbitMQTransport(rabbitmq_url, reconnect_delay=0.1, client_name=f"esb-test-{unique_name}")
    yield transport
    transport.close()


@pytest.fixture
def topology(transport: RabbitMQTransport, unique_name: str) -> Iterator[Topology]:
    spec = QueueSpec(f"{unique_name}.orders", ("order.*",), delivery_limit=3)
    with declared(transport, topology_of(unique_name, spec, retry_delays=(STEP, 2.0))) as topology:
        yield topology


class Recorder:
    """Retries each message ``retries`` times, then acks; remembers every delivery it saw."""

    def __init__(self, retries: int, delay: float = STEP) -> None:
        self.retries = retries
        self.delay = delay
        self.seen: list[tuple[Delivery, float]] = []
        self.acked = threading.Event()
        self.errors: list[BaseException] = []

    def __call__(self, delivery: Delivery) -> None:
        self.seen.append((delivery, time.monotonic()))
        try:
            if delivery.attempts < self.retries:
                delivery.retry(self.delay, f"ERP down (try {delivery.attempts + 1})")
            else:
                delivery.ack()
                self.acked.set()
        except BaseException as exc:
            self.errors.append(exc)
            raise


def test_a_retry_copy_comes_back_after_the_step_as_the_next_attempt_and_the_original_is_gone(
    transport: RabbitMQTransport, topology: Topology
) -> None:
    queue = topology.queues[0].name
    recorder = Recorder(retries=2)
    transport.publish([message("order.placed", b"order 1", "m-1")])
    with consuming(transport, queue, recorder):
        assert recorder.acked.wait(WAIT), f"seen {len(recorder.seen)}, errors {recorder.errors}"
    assert not recorder.errors
    deliveries = [delivery for delivery, _ in recorder.seen]
    assert [d.attempts for d in deliveries] == [0, 1, 2]
    assert all(d.body == b"order 1" and d.message_id == "m-1" and d.queue == queue for d in deliveries)
    # the event type check and the logs see the original routing key, not the queue name it came back with
    assert [d.routing_key for d in deliveries] == ["order.placed"] * 3
    assert [d.previous_deliveries for d in deliveries] == [0, 0, 0]  # a retry is no redelivery
    last = deliveries[-1]
    assert last.headers[HEADER_LAST_ERROR] == "ERP down (try 2)"
    assert last.headers[HEADER_RETRY_DELAY] == 300
    assert last.headers[HEADER_ORIGINAL_ROUTING_KEY] == "order.placed"
    assert [death.reason for death in last.deaths] == ["expired"]  # the step queue's: one entry, counted
    assert last.deaths[0].queue == topology.retry_queue(STEP) and last.deaths[0].count == 2
    # not before the step's delay (the TTL starts once the copy is in the step queue)
    times = [at for _, at in recorder.seen]
    assert all(later - earlier >= STEP for earlier, later in itertools.pairwise(times))
    # nothing left anywhere: the originals were acked, the copies consumed
    for name in (queue, topology.retry_queue(STEP), topology.retry_queue(2.0), topology.dead_letter_queue):
        assert transport.message_count(name) == 0, name


def test_a_delay_that_is_no_declared_step_is_refused_and_the_delivery_stays_unsettled(
    transport: RabbitMQTransport, topology: Topology
) -> None:
    transport.publish([message("order.placed", b"x", "m-x")])
    delivery = None
    deadline = time.monotonic() + WAIT
    while delivery is None and time.monotonic() < deadline:
        delivery = transport.get(topology.queues[0].name)
    assert delivery is not None
    with pytest.raises(ValueError, match=r"no retry step of 1 s"):
        delivery.retry(1.0, "nope")
    assert not delivery.settled
    delivery.retry(2.0, "the declared 2 s step")  # 2 s: declared
    assert delivery.settled
    wait_for(lambda: transport.message_count(topology.retry_queue(2.0)) == 1, "the copy in the 2 s step")


def test_retry_steps_are_ttl_quorum_queues_bound_by_their_delay(
    rabbitmq_url: str, transport: RabbitMQTransport, topology: Topology
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        for step, milliseconds in ((STEP, 300), (2.0, 2000)):
            name = topology.retry_queue(step)
            assert name == f"{topology.retry_exchange}.{milliseconds}ms"
            # the broker refuses a redeclaration with any other argument: these are the queue's own
            channel.queue_declare(name, durable=True, arguments=retry_queue_arguments(milliseconds))
            assert retry_queue_arguments(milliseconds) == {
                "x-queue-type": "quorum",
                "x-message-ttl": milliseconds,
                "x-dead-letter-exchange": "",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        channel.exchange_declare(topology.retry_exchange, exchange_type="headers", durable=True, passive=True)
        # a copy is routed by its delay header alone: 2000 ms reaches the 2 s step only
        channel.confirm_delivery()
        channel.basic_publish(
            topology.retry_exchange,
            "anything",
            b"probe",
            pika.BasicProperties(headers={HEADER_RETRY_DELAY: 2000}),
            mandatory=True,
        )
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish(
                topology.retry_exchange,
                "anything",
                b"probe",
                pika.BasicProperties(headers={HEADER_RETRY_DELAY: 999}),
                mandatory=True,
            )
        assert retry_binding(2000) == {"x-match": "all-with-x", HEADER_RETRY_DELAY: 2000}
    finally:
        connection.close()
    wait_for(lambda: transport.message_count(topology.retry_queue(2.0)) == 1, "the probe in the 2 s step")
    assert transport.message_count(topology.retry_queue(STEP)) == 0


def test_a_retried_message_that_is_dead_lettered_keeps_its_original_routing_key_not_its_attempts(
    transport: RabbitMQTransport, topology: Topology
) -> None:
    queue = topology.queues[0].name
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        if delivery.attempts == 0:
            delivery.retry(STEP, "timeout")
        else:
            delivery.dead_letter("retries exhausted after 2 tries; last error: timeout", "TransientError")
            done.set()

    transport.publish([message("order.placed", b"poison", "m-p")])
    with consuming(transport, queue, handler):
        assert done.wait(WAIT)
    dead = None
    deadline = time.monotonic() + WAIT
    while dead is None and time.monotonic() < deadline:
        dead = transport.get(topology.dead_letter_queue)
    assert dead is not None
    assert dead.routing_key == "order.placed"
    assert dead.headers[HEADER_ORIGINAL_ROUTING_KEY] == "order.placed"
    assert dead.headers[HEADER_FAILED_QUEUE] == queue
    # the count of tries is in the reason; the copy has none of its own, so a dead-letter subscriber
    # that retries it starts at its first step (it used to start at the route's count)
    assert HEADER_ATTEMPTS not in dead.headers and dead.attempts == 0
    assert str(dead.headers[HEADER_ERROR_REASON]).startswith("retries exhausted after 2 tries")
    dead.ack()


def test_a_replayed_dead_letter_of_the_queue_is_not_dropped_by_the_brokers_cycle_check(
    rabbitmq_url: str, transport: RabbitMQTransport, topology: Topology
) -> None:
    """The broker silently drops a message it dead-letters into a queue its x-death already names (a
    "cycle" with no rejection in it). A message the route's delivery limit dead-lettered, replayed with its
    headers, names the route queue: its retry copy would vanish in the step queue unless it leaves
    x-death behind (seen here: dropped, 3.10.8)."""
    queue = topology.queues[0].name
    transport.publish([message("order.placed", b"replayed", "m-r")])
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        # the broker dead-letters it itself (delivery limit 3, four returns): x-death names the route queue
        for returned, (method, _, _) in enumerate(channel.consume(queue, inactivity_timeout=WAIT)):
            assert method is not None
            channel.basic_reject(method.delivery_tag, requeue=True)
            if returned == 3:
                break
        channel.cancel()
        dead: list[tuple[Any, Any, bytes]] = []
        for method, properties, body in channel.consume(topology.dead_letter_queue, inactivity_timeout=WAIT):
            assert method is not None
            dead.append((method, properties, body))
            channel.basic_ack(method.delivery_tag)
            break
        channel.cancel()
        _, properties, body = dead[0]
        deaths = [(entry["queue"], entry["reason"]) for entry in properties.headers["x-death"]]
        assert deaths == [(queue, "delivery_limit")]
        # an operator replays it as it was (headers and all)
        channel.basic_publish(topology.exchange, "order.placed", body, properties, mandatory=True)
    finally:
        connection.close()
    recorder = Recorder(retries=1)
    with consuming(transport, queue, recorder):
        assert recorder.acked.wait(WAIT), f"the retry copy did not come back (seen {len(recorder.seen)})"
    assert [d.attempts for d, _ in recorder.seen] == [0, 1]


def test_a_retry_copy_that_cannot_be_routed_leaves_the_original_unsettled(
    rabbitmq_url: str, transport: RabbitMQTransport, topology: Topology
) -> None:
    """Copy confirmed before the original is acked: with the step queue gone, the copy is unroutable, the
    retry raises, and the original is neither acked nor anywhere else (it goes back to its queue)."""
    queue = topology.queues[0].name
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().queue_delete(topology.retry_queue(STEP))
    finally:
        connection.close()
    transport.publish([message("order.placed", b"kept", "m-k")])
    delivery = None
    deadline = time.monotonic() + WAIT
    while delivery is None and time.monotonic() < deadline:
        delivery = transport.get(queue)
    assert delivery is not None
    with pytest.raises(TransportError, match="unroutable"):
        delivery.retry(STEP, "ERP down")
    assert not delivery.settled
    delivery.return_unprocessed()
    wait_for(lambda: transport.message_count(queue) == 1, "the original back in its queue")
    assert transport.message_count(topology.dead_letter_queue) == 0
