"""Declare a ``Topology`` on RabbitMQ: one topic exchange, quorum queues, one dead letter channel.

Every queue is a durable quorum queue (replicated, and it counts deliveries so that a poison
message is dead-lettered after ``delivery_limit`` redeliveries; RabbitMQ 3.10 has no default
limit). Dead-lettering is at-least-once, which RabbitMQ only allows together with
``x-overflow=reject-publish``: without both, a message on its way to the dead letter exchange
can be lost when the broker restarts.

Dead-letter subscribers are quorum queues of their own bound to the dead letter exchange (fanout),
next to the dead letter queue. Their own dead letter exchange is the topology's
``final_dead_letter_exchange``, bound to the dead letter queue only: a dead letter that its
subscriber cannot handle ends in the dead letter queue instead of looping back into the subscriber.

Declaring is idempotent; declaring an existing queue with other arguments fails with
``PRECONDITION_FAILED`` (RabbitMQ never changes a queue's arguments: delete it, or use a policy).
"""

from __future__ import annotations

from typing import Any

from connectors.base import QueueSpec, Topology

DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}


def queue_arguments(spec: QueueSpec, topology: Topology) -> dict[str, Any]:
    """The arguments of a route's queue, or of a dead-letter subscriber's (its own dead letter exchange)."""
    subscriber = spec in topology.dead_letter_subscribers
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": topology.final_dead_letter_exchange if subscriber else topology.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def declare_topology(channel: Any, topology: Topology) -> None:
    """Declare everything on a pika ``BlockingChannel``."""
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(topology.dead_letter_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_letter_queue, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange, routing_key="")
    channel.exchange_declare(topology.final_dead_letter_exchange, exchange_type="fanout", durable=True)
    channel.queue_bind(topology.dead_letter_queue, topology.final_dead_letter_exchange, routing_key="")
    for spec in topology.queues:
        channel.queue_declare(spec.name, durable=True, arguments=queue_arguments(spec, topology))
        for pattern in spec.bindings:
            channel.queue_bind(spec.name, topology.exchange, routing_key=pattern)
    for spec in topology.dead_letter_subscribers:
        channel.queue_declare(spec.name, durable=True, arguments=queue_arguments(spec, topology))
        channel.queue_bind(spec.name, topology.dead_letter_exchange, routing_key="")


def delete_topology(channel: Any, topology: Topology) -> None:
    """Delete queues and exchanges of ``topology`` (for tests and tools); missing ones are fine."""
    specs = (*topology.queues, *topology.dead_letter_subscribers)
    for queue in (*(spec.name for spec in specs), topology.dead_letter_queue):
        channel.queue_delete(queue)
    for exchange in (topology.exchange, topology.dead_letter_exchange, topology.final_dead_letter_exchange):
        channel.exchange_delete(exchange)


__all__ = ["DEAD_LETTER_QUEUE_ARGUMENTS", "declare_topology", "delete_topology", "queue_arguments"]
