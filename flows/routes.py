"""Routes, declared: what a route consumes (bindings), what it is called, who handles it.

The transport topology is derived from the declarations, so queues never drift from code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from canonical_model.envelope import MAX_BODY_BYTES
from connectors.base import DeliveryHandler, QueueSpec, Topology
from connectors.consumer import (
    DEFAULT_RETRY_SCHEDULE,
    DeadLetterHandler,
    DeliveryPolicy,
    EnvelopeHandler,
    dead_letter_consumer,
    envelope_consumer,
)

#: the broker's own redelivery limit of a route's queue: a backstop only (connection losses, crash loops);
#: tries are counted by the consumer (retry schedule, attempt journal)
DELIVERY_LIMIT_BACKSTOP = 100


@dataclass(frozen=True)
class Route:
    """A route: what it consumes (``bindings``, topic patterns), who handles it, and ``calls``: the back
    offices its handler calls (by the ``system`` their connectors name in errors, e.g. ``erp``), whose
    circuit breakers pause it while they are down. ``retry_schedule``: its default delayed retries
    (configuration may override it per route)."""

    name: str
    bindings: tuple[str, ...]
    handler: EnvelopeHandler
    description: str
    delivery_limit: int = DELIVERY_LIMIT_BACKSTOP
    calls: tuple[str, ...] = ()
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE

    def consumer(
        self, policy: DeliveryPolicy | None = None, *, max_body_bytes: int = MAX_BODY_BYTES
    ) -> DeliveryHandler:
        """The route as a transport's delivery callback: a body over ``max_body_bytes``, or an envelope
        whose type matches none of the route's bindings (topic patterns), is dead-lettered with the
        reason before the handler runs."""
        return envelope_consumer(self.handler, policy, accepts=self.bindings, max_body_bytes=max_body_bytes)


@dataclass(frozen=True)
class DeadLetterRoute:
    """A route that reads the dead letter channel through a queue of its own (a dead-letter subscriber).

    It sees every dead letter, whatever its type; what it cannot handle goes to the dead letter queue.
    """

    name: str
    handler: DeadLetterHandler
    description: str
    delivery_limit: int = DELIVERY_LIMIT_BACKSTOP
    calls: tuple[str, ...] = ()
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE

    def consumer(self, policy: DeliveryPolicy | None = None) -> DeliveryHandler:
        """The route as a transport's delivery callback on its dead-letter subscriber queue."""
        return dead_letter_consumer(self.handler, policy)


def queue_name(namespace: str, route: Route | DeadLetterRoute) -> str:
    return f"{namespace}.{route.name}"


def topology(
    namespace: str,
    routes: Sequence[Route],
    dead_letter_routes: Sequence[DeadLetterRoute] = (),
    *,
    shards: int = 1,
    retry_delays: Sequence[float] = (),
) -> Topology:
    """The exchange, queues and dead letter channel for ``routes`` and ``dead_letter_routes`` under ``namespace``.

    ``shards``: queues per route (one customer's events stay in one; see ``QueueSpec``); the dead-letter
    subscribers have one queue each. ``retry_delays``: every retry step delay (seconds) the routes use
    (RabbitMQ declares a step queue for each).
    """
    delays = set(retry_delays)
    return Topology(
        queues=tuple(
            QueueSpec(
                name=queue_name(namespace, r), bindings=r.bindings, delivery_limit=r.delivery_limit, shards=shards
            )
            for r in routes
        ),
        dead_letter_subscribers=tuple(
            QueueSpec(name=queue_name(namespace, r), bindings=(), delivery_limit=r.delivery_limit)
            for r in dead_letter_routes
        ),
        exchange=f"{namespace}.events",
        dead_letter_exchange=f"{namespace}.dlx",
        dead_letter_queue=f"{namespace}.dead_letter",
        retry_delays=tuple(sorted(delays)),
        retry_exchange=f"{namespace}.retry",
    )


__all__ = ["DELIVERY_LIMIT_BACKSTOP", "DeadLetterRoute", "Route", "queue_name", "topology"]
