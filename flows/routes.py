"""Routes, declared: what a route consumes (bindings), what it is called, who handles it.

The transport topology is derived from the declarations, so queues never drift from code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.base import DeliveryHandler, QueueSpec, Topology
from connectors.consumer import EnvelopeHandler, envelope_consumer


@dataclass(frozen=True)
class Route:
    name: str
    bindings: tuple[str, ...]
    handler: EnvelopeHandler
    description: str
    delivery_limit: int = 5

    def consumer(self) -> DeliveryHandler:
        """The route as a transport's delivery callback: an envelope whose type matches none of the
        route's bindings (topic patterns) is dead-lettered with the reason before the handler runs."""
        return envelope_consumer(self.handler, accepts=self.bindings)


def queue_name(namespace: str, route: Route) -> str:
    return f"{namespace}.{route.name}"


def topology(namespace: str, routes: Sequence[Route]) -> Topology:
    """The exchange, queues and dead letter channel for ``routes`` under ``namespace``."""
    return Topology(
        queues=tuple(
            QueueSpec(name=queue_name(namespace, r), bindings=r.bindings, delivery_limit=r.delivery_limit)
            for r in routes
        ),
        exchange=f"{namespace}.events",
        dead_letter_exchange=f"{namespace}.dlx",
        dead_letter_queue=f"{namespace}.dead_letter",
    )


__all__ = ["Route", "queue_name", "topology"]
