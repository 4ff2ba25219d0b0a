"""Sharded routes on RabbitMQ: a consistent-hash exchange over shard queues with a single active consumer
keeps each partition key's messages in order while the shards spread the load. Real broker (plugin
rabbitmq_consistent_hash_exchange, enabled by .ci/run), one namespace per test.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack

import pika
import pytest

from canonical_model.errors import TransportError
from connectors.base import (
    HEADER_FAILED_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_PARTITION_KEY,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    Topology,
)
from connectors.rabbitmq import RabbitMQTransport
from connectors.rabbitmq import topology as rabbitmq_topology
from connectors.rabbitmq.publisher import PARTITION_KEY_MAX
from connectors.rabbitmq.topology import CONSISTENT_HASH, ExchangeTypeUnknown, shard_exchange
from tests.connectors.rabbit_helpers import WAIT, consuming, declared, message, topology_of, wait_for

pytestmark = pytest.mark.rabbitmq

SHARDS = 4


@pytest.fixture
def transport(rabbitmq_url: str, unique_name: str) -> Iterator[RabbitMQTransport]:
    transport = RabbitMQTransport(rabbitmq_url, client_name=f"esb-test-{unique_name}")
    yield transport
    transport.close()


@pytest.fixture
def topology(transport: RabbitMQTransport, unique_name: str) -> Iterator[Topology]:
    spec = QueueSpec(f"{unique_name}.customers", ("customer.*", "order.placed"), shards=SHARDS)
    with declared(transport, topology_of(unique_name, spec, retry_delays=(0.3,))) as topology:
        yield topology


def counts(transport: RabbitMQTransport, spec: QueueSpec) -> list[int]:
    return [transport.message_count(name) for name in spec.queue_names]


@pytest.mark.parametrize("consumers_per_shard", [1, 2])
def test_per_key_order_holds_over_four_shards_with_competing_consumers(
    rabbitmq_url: str, transport: RabbitMQTransport, topology: Topology, consumers_per_shard: int
) -> None:
    """2,000 messages of 50 partition keys over 4 shards, each shard consumed by ``consumers_per_shard``
    competing consumers (separate transports: separate connections, as separate worker processes have):
    each key stays on one shard, its messages are handled in the order they were published, and on each
    shard one consumer only gets messages (single active consumer)."""
    spec = topology.queues[0]
    keys, per_key = 50, 40
    total = keys * per_key
    handled: list[tuple[str, str, str, int]] = []  # (consumer, shard queue, key, sequence)
    lock = threading.Lock()
    everything = threading.Event()

    def handler_of(consumer: str) -> object:
        def handle(delivery: Delivery) -> None:
            key, sequence = delivery.body.decode().split(":")
            delivery.ack()
            with lock:
                handled.append((consumer, delivery.queue, key, int(sequence)))
                if len(handled) == total:
                    everything.set()

        return handle

    # published in order per key, keys interleaved, several batches
    messages = [
        message("customer.updated", f"C-{k:03d}:{n}".encode(), f"m-{k}-{n}", partition_key=f"C-{k:03d}")
        for n in range(per_key)
        for k in range(keys)
    ]
    consumers = [
        RabbitMQTransport(rabbitmq_url, client_name=f"esb-test-shard-consumer-{c}") for c in range(consumers_per_shard)
    ]
    try:
        for consumer in consumers:
            consumer.declare(topology)
        with_consumers = [
            consuming(consumer, name, handler_of(f"{index}/{name}"), prefetch=50)  # type: ignore[arg-type]
            for index, consumer in enumerate(consumers)
            for name in spec.queue_names
        ]
        for context in with_consumers:
            context.__enter__()
        try:
            started = time.monotonic()
            for batch in range(0, total, 250):
                transport.publish(messages[batch : batch + 250])
            assert everything.wait(60), f"handled {len(handled)} of {total}"
            took = time.monotonic() - started
        finally:
            for context in reversed(with_consumers):
                context.__exit__(None, None, None)
    finally:
        for consumer in consumers:
            consumer.close()
    by_key: dict[str, list[int]] = defaultdict(list)
    shard_of_key: dict[str, set[str]] = defaultdict(set)
    consumers_of_shard: dict[str, set[str]] = defaultdict(set)
    for consumer, queue, key, sequence in handled:
        by_key[key].append(sequence)
        shard_of_key[key].add(queue)
        consumers_of_shard[queue].add(consumer)
    assert len(handled) == total
    assert all(sequences == list(range(per_key)) for sequences in by_key.values()), "a key out of order"
    assert all(len(queues) == 1 for queues in shard_of_key.values()), "a key on two shards"
    assert all(len(names) == 1 for names in consumers_of_shard.values()), "two active consumers on one shard"
    spread = Counter(queue for _, queue, _, _ in handled)
    print(
        f"{total} messages, {keys} keys, {consumers_per_shard} consumer(s) per shard: {took:.2f} s; "
        f"per shard {[spread[name] for name in spec.queue_names]}; "
        f"keys per shard {[sum(1 for q in shard_of_key.values() if name in q) for name in spec.queue_names]}"
    )
    assert len(spread) == SHARDS, "a shard got nothing"
    assert counts(transport, spec) == [0] * SHARDS


def test_the_publisher_always_sets_the_partition_key(transport: RabbitMQTransport, topology: Topology) -> None:
    spec = topology.queues[0]
    long_key = "K" * 1000
    transport.publish(
        [
            message("customer.created", b"a", "m-a", partition_key="C-1"),
            message("customer.created", b"b", "m-b"),  # no key: its message id
            OutgoingMessage("customer.created", b"c", "m-c", headers={HEADER_PARTITION_KEY: "forged"}),
            message("customer.created", b"d", "m-d", partition_key=long_key),
        ]
    )
    wait_for(lambda: sum(counts(transport, spec)) == 4, "four messages in the shards")
    seen: dict[bytes, Delivery] = {}
    # every shard consumed until the handler saw all four (a shard's ready count reaches 0 as soon as its
    # message is delivered, before the handler ran: stopping then hands the message back unseen)
    with ExitStack() as shards:
        for name in spec.queue_names:
            shards.enter_context(consuming(transport, name, lambda d: (d.ack(), seen.setdefault(d.body, d))))
        wait_for(lambda: len(seen) == 4, "all four")
    assert seen[b"a"].headers[HEADER_PARTITION_KEY] == "C-1"
    assert seen[b"b"].headers[HEADER_PARTITION_KEY] == "m-b"
    assert seen[b"c"].headers[HEADER_PARTITION_KEY] == "m-c"
    assert seen[b"d"].headers[HEADER_PARTITION_KEY] == "K" * PARTITION_KEY_MAX


def test_without_the_header_every_message_goes_to_one_and_the_same_shard(
    rabbitmq_url: str, transport: RabbitMQTransport, topology: Topology
) -> None:
    """What the broker does with a message that lacks the hash header (another publisher's, raw): it
    routes it (no return), and always to the same one shard. This is why the publisher always sets it."""
    spec = topology.queues[0]
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for n in range(40):
            headers = None if n % 2 else {"other": n}
            channel.basic_publish(
                topology.exchange, "customer.updated", b"x", pika.BasicProperties(headers=headers), mandatory=True
            )
    finally:
        connection.close()
    wait_for(lambda: sum(counts(transport, spec)) == 40, "forty messages routed")
    assert sorted(counts(transport, spec)) == [0, 0, 0, 40]


def test_a_retried_message_comes_back_to_its_own_shard(transport: RabbitMQTransport, topology: Topology) -> None:
    spec = topology.queues[0]
    transport.publish([message("order.placed", b"retry me", "m-r", partition_key="C-7")])
    wait_for(lambda: sum(counts(transport, spec)) == 1, "the message in a shard")
    shard = spec.queue_names[counts(transport, spec).index(1)]
    seen: list[Delivery] = []
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        seen.append(delivery)
        if delivery.attempts == 0:
            delivery.retry(0.3, "ERP down")
        else:
            delivery.ack()
            done.set()

    with consuming(transport, shard, handler):
        assert done.wait(WAIT)
    assert [(d.queue, d.attempts, d.routing_key) for d in seen] == [
        (shard, 0, "order.placed"),
        (shard, 1, "order.placed"),
    ]
    assert seen[1].headers[HEADER_PARTITION_KEY] == "C-7"
    assert counts(transport, spec) == [0] * SHARDS


def test_a_dead_letter_of_a_shard_names_the_shard_and_keeps_the_routing_key(
    transport: RabbitMQTransport, topology: Topology
) -> None:
    spec = topology.queues[0]
    transport.publish([message("customer.created", b"bad", "m-bad", partition_key="C-9")])
    wait_for(lambda: sum(counts(transport, spec)) == 1, "the message in a shard")
    shard = spec.queue_names[counts(transport, spec).index(1)]
    delivery = transport.get(shard)
    assert delivery is not None
    delivery.dead_letter("not a customer", "InvalidMessage")
    dead = None
    deadline = time.monotonic() + WAIT
    while dead is None and time.monotonic() < deadline:
        dead = transport.get(topology.dead_letter_queue)
    assert dead is not None
    assert dead.routing_key == "customer.created"
    assert dead.headers[HEADER_FAILED_QUEUE] == shard
    assert dead.headers[HEADER_ORIGINAL_ROUTING_KEY] == "customer.created"
    dead.ack()


def test_a_broker_without_the_exchange_type_gets_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, transport: RabbitMQTransport, unique_name: str
) -> None:
    """The plugin stays enabled on the shared broker: the test asks for an exchange type no broker has, as
    a broker without the plugin sees x-consistent-hash; the error names the plugin to enable."""
    missing = "x-esb-test-no-such-type"
    monkeypatch.setattr(rabbitmq_topology, "CONSISTENT_HASH", missing)
    monkeypatch.setitem(rabbitmq_topology.PLUGINS, missing, "rabbitmq_consistent_hash_exchange")
    spec = QueueSpec(f"{unique_name}.sharded", ("order.placed",), shards=2)
    topology = topology_of(unique_name, spec)
    try:
        with pytest.raises(ExchangeTypeUnknown, match="rabbitmq-plugins enable rabbitmq_consistent_hash_exchange"):
            transport.declare(topology)
        # the broker closed the admin connection over it; the transport goes on with a new one
        assert transport.message_count(topology.dead_letter_queue) == 0
        assert isinstance(ExchangeTypeUnknown("x", system="rabbitmq"), TransportError)
    finally:
        monkeypatch.undo()
        transport.delete(topology)
    assert CONSISTENT_HASH == "x-consistent-hash"


def test_delete_removes_shards_their_exchange_and_the_retry_steps(
    rabbitmq_url: str, transport: RabbitMQTransport, unique_name: str
) -> None:
    spec = QueueSpec(f"{unique_name}.gone", ("order.placed",), shards=3)
    topology = topology_of(unique_name, spec, retry_delays=(1.0, 5.0))
    transport.declare(topology)
    transport.delete(topology)
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        for queue in (*spec.queue_names, topology.retry_queue(1.0), topology.retry_queue(5.0)):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
                connection.channel().queue_declare(queue, passive=True)
            assert missing.value.reply_code == 404, queue
        for exchange in (shard_exchange(spec), topology.retry_exchange, topology.exchange):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
                connection.channel().exchange_declare(exchange, passive=True)
            assert missing.value.reply_code == 404, exchange
    finally:
        connection.close()
