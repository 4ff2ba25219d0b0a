"""Routes, declared: what a route consumes (bindings), what it is called, who handles it.

The transport topology is derived from the declarations, so queues never drift from code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from canonical_model.envelope import MAX_BODY_BYTES
from connectors.base import DeliveryHandler, QueueSpec, Topology
from connectors.consumer import (
    Backoff,
    DeadLetterHandler,
    EnvelopeHandler,
    dead_letter_consumer,
    envelope_consumer,
    exponential_backoff,
)


@dataclass(frozen=True)
class Route:
    name: str
    bindings: tuple[str, ...]
    handler: EnvelopeHandler
    description: str
    delivery_limit: int = 5

    def consumer(
        self, backoff: Backoff = exponential_backoff, *, max_body_bytes: int = MAX_BODY_BYTES
    ) -> DeliveryHandler:
        """The route as a transport's delivery callback: a body over ``max_body_bytes``, or an envelope
        whose type matches none of the route's bindings (topic patterns), is dead-lettered with the
        reason before the handler runs."""
        return envelope_consumer(self.handler, backoff, accepts=self.bindings, max_body_bytes=max_body_bytes)


@dataclass(frozen=True)
class DeadLetterRoute:
    """A route that reads the dead letter channel through a queue of its own (a dead-letter subscriber).

    It sees every dead letter, whatever its type; what it cannot handle goes to the dead letter queue.
    """

    name: str
    handler: DeadLetterHandler
    description: str
    delivery_limit: int = 5

    def consumer(self, backoff: Backoff = exponential_backoff) -> DeliveryHandler:
        """The route as a transport's delivery callback on its dead-letter subscriber queue."""
        return dead_letter_consumer(self.handler, backoff)


def queue_name(namespace: str, route: Route | DeadLetterRoute) -> str:
    return f"{namespace}.{route.name}"


def topology(namespace: str, routes: Sequence[Route], dead_letter_routes: Sequence[DeadLetterRoute] = ()) -> Topology:
    """The exchange, queues and dead letter channel for ``routes`` and ``dead_letter_routes`` under ``namespace``."""
    return Topology(
        queues=tuple(
            QueueSpec(name=queue_name(namespace, r), bindings=r.bindings, delivery_limit=r.delivery_limit)
            for r in routes
        ),
        dead_letter_subscribers=tuple(
            QueueSpec(name=queue_name(namespace, r), bindings=(), delivery_limit=r.delivery_limit)
            for r in dead_letter_routes
        ),
        exchange=f"{namespace}.events",
        dead_letter_exchange=f"{namespace}.dlx",
        dead_letter_queue=f"{namespace}.dead_letter",
    )


__all__ = ["DeadLetterRoute", "Route", "queue_name", "topology"]
