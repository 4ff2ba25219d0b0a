"""Reading a route's queue in tests whatever its number of shards (``worker.shards``, 4 by default).

A route queue ``<queue>`` with shards is the queues ``<queue>.0`` .. ``<queue>.<n-1>``; a message is in
one of them by its partition key (RabbitMQ's consistent hash decides which), so a test that only wants
*a* message of the route, or all of them, looks in every shard.
"""

from __future__ import annotations

from connectors.base import Delivery, Topology, Transport


def shard_queues(topology: Topology, queue: str) -> tuple[str, ...]:
    """The queues that hold what is routed to ``queue`` (a route's base name, or one of its shards)."""
    return topology.queue(queue).queue_names


def get_any(transport: Transport, topology: Topology, queue: str) -> Delivery | None:
    """One ready message of any shard of ``queue`` (lowest shard first), or None when all are empty."""
    for name in shard_queues(topology, queue):
        delivery = transport.get(name)
        if delivery is not None:
            return delivery
    return None


def drain_all(transport: Transport, topology: Topology, queue: str) -> list[Delivery]:
    """Every ready message of every shard of ``queue``, acked; shard by shard, each in its queue's order."""
    taken = []
    for name in shard_queues(topology, queue):
        while (delivery := transport.get(name)) is not None:
            delivery.ack()
            taken.append(delivery)
    return taken
