"""Declare a ``Topology`` on RabbitMQ: one topic exchange, quorum queues, one dead letter channel,
retry step queues, and consistent-hash shards.

Every queue is a durable quorum queue (replicated, and it counts deliveries so that a poison
message is dead-lettered after ``delivery_limit`` redeliveries; RabbitMQ 3.10 has no default
limit). Dead-lettering is at-least-once, which RabbitMQ only allows together with
``x-overflow=reject-publish``: without both, a message on its way to the dead letter exchange
can be lost when the broker restarts. A route queue of an ``exclusive`` spec has a single active
consumer (``x-single-active-consumer``): a second consumer waits, and takes over when the first goes.

Dead-letter subscribers are quorum queues of their own bound to the dead letter exchange (fanout),
next to the dead letter queue. Their own dead letter exchange is the topology's
``final_dead_letter_exchange``, bound to the dead letter queue only: a dead letter that its
subscriber cannot handle ends in the dead letter queue instead of looping back into the subscriber.

Delayed retry (``Delivery.retry``): a headers exchange ``retry_exchange`` and one quorum queue per
delay of ``retry_delays`` (``Topology.retry_queue``), bound with ``x-match: all-with-x`` on
``HEADER_RETRY_DELAY`` = the delay in milliseconds (with plain ``all`` a headers exchange ignores every
binding argument that starts with ``x-``: each step would match every copy; seen here on 3.10.8).
A step queue has that delay as its message TTL and dead-letters (at least once) to the default
exchange, with the routing key the copy was published with: the name of the queue the message came
from, so it goes straight back there.
Per-message TTL would expire only at the head of one shared queue: hence one queue per step.

Shards (``spec.shards`` > 1): a consistent-hash exchange ``<name>.shards`` hashing the header
``HEADER_PARTITION_KEY``, bound from the events exchange with each of the spec's patterns, and one
queue ``<name>.<i>`` per shard bound to it with weight 1. It needs the broker plugin
``rabbitmq_consistent_hash_exchange``. A message without the header is still routed, but every
such message to the same one shard (RabbitMQ 3.10.8, seen here): publishers always set it.

Declaring is idempotent; declaring an existing queue with other arguments fails with
``PRECONDITION_FAILED`` (RabbitMQ never changes a queue's arguments: delete it, or use a policy).
"""

from __future__ import annotations

from typing import Any

import pika.exceptions

from canonical_model.errors import TransportError
from connectors.base import HEADER_PARTITION_KEY, HEADER_RETRY_DELAY, QueueSpec, Topology, delay_ms
from connectors.rabbitmq.errors import SYSTEM

DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
CONSISTENT_HASH = "x-consistent-hash"
#: exchange types that come with a broker plugin, and the plugin
PLUGINS = {CONSISTENT_HASH: "rabbitmq_consistent_hash_exchange"}
#: the binding key of a shard queue on a consistent-hash exchange: its weight (share of the hash ring)
SHARD_WEIGHT = "1"


class ExchangeTypeUnknown(TransportError):
    """The broker does not know an exchange type the topology needs (a plugin is not enabled)."""


def queue_arguments(spec: QueueSpec, topology: Topology) -> dict[str, Any]:
    """The arguments of a route's queue (each shard's), or of a dead-letter subscriber's (its own dead
    letter exchange)."""
    subscriber = spec in topology.dead_letter_subscribers
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": topology.final_dead_letter_exchange if subscriber else topology.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    if spec.exclusive:
        arguments["x-single-active-consumer"] = True
    return arguments


def retry_delays_ms(topology: Topology) -> tuple[int, ...]:
    """The distinct retry steps of ``topology`` in milliseconds, shortest first."""
    return tuple(sorted({delay_ms(delay) for delay in topology.retry_delays}))


def retry_queue_arguments(milliseconds: int) -> dict[str, Any]:
    """A retry step queue: holds each message ``milliseconds``, then dead-letters it (at least once) to
    the default exchange with its own routing key (the queue it came from)."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": milliseconds,
        "x-dead-letter-exchange": "",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_binding(milliseconds: int) -> dict[str, Any]:
    """The headers-exchange binding arguments of the retry step of ``milliseconds``."""
    # "all-with-x": plain "all" leaves x- arguments out of the match, and the header is x-esb-retry-delay
    return {"x-match": "all-with-x", HEADER_RETRY_DELAY: milliseconds}


def shard_exchange(spec: QueueSpec) -> str:
    """The consistent-hash exchange in front of a sharded spec's queues."""
    return f"{spec.name}.shards"


def declare_exchange(channel: Any, name: str, exchange_type: str, arguments: dict[str, Any] | None = None) -> None:
    """``exchange_declare`` that says which plugin to enable when the broker does not know the type:
    raises ``ExchangeTypeUnknown`` (the broker closes the whole connection for it: 503 COMMAND_INVALID)."""
    try:
        channel.exchange_declare(name, exchange_type=exchange_type, durable=True, arguments=arguments)
    except pika.exceptions.ConnectionClosedByBroker as exc:
        if exc.reply_code != 503 or "unknown exchange type" not in str(exc.reply_text):
            raise
        plugin = PLUGINS.get(exchange_type)
        advice = (
            f"enable the broker plugin: rabbitmq-plugins enable {plugin}" if plugin else "no plugin of ours provides it"
        )
        raise ExchangeTypeUnknown(
            f"RabbitMQ does not know the exchange type {exchange_type!r} needed for {name!r}: {advice}",
            system=SYSTEM,
            operation="declare",
        ) from exc


def declare_topology(channel: Any, topology: Topology) -> None:
    """Declare everything on a pika ``BlockingChannel``; ``ExchangeTypeUnknown`` if a sharded spec meets a
    broker without the consistent-hash plugin."""
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(topology.dead_letter_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_letter_queue, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange, routing_key="")
    channel.exchange_declare(topology.final_dead_letter_exchange, exchange_type="fanout", durable=True)
    channel.queue_bind(topology.dead_letter_queue, topology.final_dead_letter_exchange, routing_key="")
    steps = retry_delays_ms(topology)
    if steps:
        channel.exchange_declare(topology.retry_exchange, exchange_type="headers", durable=True)
        for milliseconds in steps:
            step = topology.retry_queue(milliseconds / 1000)
            channel.queue_declare(step, durable=True, arguments=retry_queue_arguments(milliseconds))
            channel.queue_bind(step, topology.retry_exchange, routing_key="", arguments=retry_binding(milliseconds))
    for spec in topology.queues:
        if spec.shards > 1:
            shards = shard_exchange(spec)
            declare_exchange(channel, shards, CONSISTENT_HASH, {"hash-header": HEADER_PARTITION_KEY})
            for pattern in spec.bindings:
                channel.exchange_bind(shards, topology.exchange, routing_key=pattern)
            for name in spec.queue_names:
                channel.queue_declare(name, durable=True, arguments=queue_arguments(spec, topology))
                channel.queue_bind(name, shards, routing_key=SHARD_WEIGHT)
        else:
            channel.queue_declare(spec.name, durable=True, arguments=queue_arguments(spec, topology))
            for pattern in spec.bindings:
                channel.queue_bind(spec.name, topology.exchange, routing_key=pattern)
    for spec in topology.dead_letter_subscribers:
        channel.queue_declare(spec.name, durable=True, arguments=queue_arguments(spec, topology))
        channel.queue_bind(spec.name, topology.dead_letter_exchange, routing_key="")


def delete_topology(channel: Any, topology: Topology) -> None:
    """Delete queues and exchanges of ``topology`` (for tests and tools): shards, retry steps and their
    exchanges included; missing ones are fine."""
    specs = (*topology.queues, *topology.dead_letter_subscribers)
    queues = [name for spec in specs for name in spec.queue_names]
    steps = [topology.retry_queue(milliseconds / 1000) for milliseconds in retry_delays_ms(topology)]
    for queue in (*queues, *steps, topology.dead_letter_queue):
        channel.queue_delete(queue)
    exchanges = [shard_exchange(spec) for spec in topology.queues if spec.shards > 1]
    if steps:
        exchanges.append(topology.retry_exchange)
    for exchange in (*exchanges, topology.exchange, topology.dead_letter_exchange, topology.final_dead_letter_exchange):
        channel.exchange_delete(exchange)


__all__ = [
    "CONSISTENT_HASH",
    "DEAD_LETTER_QUEUE_ARGUMENTS",
    "ExchangeTypeUnknown",
    "declare_exchange",
    "declare_topology",
    "delete_topology",
    "queue_arguments",
    "retry_binding",
    "retry_delays_ms",
    "retry_queue_arguments",
    "shard_exchange",
]
