"""Declare a ``Topology`` on RabbitMQ: one topic exchange, quorum queues, one dead letter channel.

Every queue is a durable quorum queue (replicated, and it counts deliveries so that a poison
message is dead-lettered after ``delivery_limit`` redeliveries; RabbitMQ 3.10 has no default
limit). Dead-lettering is at-least-once, which RabbitMQ only allows together with
``x-overflow=reject-publish``: without both, a message on its way to the dead letter exchange
can be lost when the broker restarts.

Declaring is idempotent; declaring an existing queue with other arguments fails with
``PRECONDITION_FAILED`` (RabbitMQ never changes a queue's arguments: delete it, or use a policy).
"""

from __future__ import annotations

from typing import Any

from connectors.base import QueueSpec, Topology

DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}


def queue_arguments(spec: QueueSpec, topology: Topology) -> dict[str, Any]:
    """The arguments of a route's queue."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def declare_topology(channel: Any, topology: Topology) -> None:
    """Declare everything on a pika ``BlockingChannel``."""
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(topology.dead_letter_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_letter_queue, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange, routing_key="")
    for spec in topology.queues:
        channel.queue_declare(spec.name, durable=True, arguments=queue_arguments(spec, topology))
        for pattern in spec.bindings:
            channel.queue_bind(spec.name, topology.exchange, routing_key=pattern)


def delete_topology(channel: Any, topology: Topology) -> None:
    """Delete queues and exchanges of ``topology`` (for tests and tools); missing ones are fine."""
    for queue in (*(spec.name for spec in topology.queues), topology.dead_letter_queue):
        channel.queue_delete(queue)
    for exchange in (topology.exchange, topology.dead_letter_exchange):
        channel.exchange_delete(exchange)


__all__ = ["DEAD_LETTER_QUEUE_ARGUMENTS", "declare_topology", "delete_topology", "queue_arguments"]
