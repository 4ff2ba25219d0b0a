"""Wiring: settings -> database, CRM services, transport, ERP connector and routes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from types import TracebackType

import structlog

from connectors.base import OutgoingMessage, Transport
from connectors.erp import ErpClient
from connectors.metrics import Metrics
from connectors.publishing import envelope_publisher
from connectors.registry import create_transport
from connectors.urls import redact_database_url
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.outbox import OutboxRelay, PendingEvent
from crm_core.services import CrmService
from esb.config import ConfigError, EsbSettings
from esb.material_schedule import MaterialSyncSchedule
from esb.test_hooks import TestHooks
from flows.catalogue import all_routes, dead_letter_routes
from flows.material_sync import sync_materials
from flows.routes import DeadLetterRoute, Route, queue_name, topology

log = structlog.get_logger(__name__)


def build_transport(settings: EsbSettings) -> Transport:
    if settings.transport == "rabbitmq":
        return create_transport(
            "rabbitmq",
            url=settings.rabbitmq_url.get_secret_value(),
            connection_attempts=settings.rabbitmq_connection_attempts,
            retry_delay=settings.rabbitmq_retry_delay,
            socket_timeout=settings.rabbitmq_connect_timeout,
            stack_timeout=settings.rabbitmq_connect_timeout,
            heartbeat=settings.rabbitmq_heartbeat,
            reconnect_max_delay=settings.rabbitmq_reconnect_max_delay,
        )
    return create_transport("embedded", url=settings.embedded_url, lease_seconds=settings.embedded_lease_seconds)


class Application:
    """One process's view of crm-esb: build once, share between the worker's threads.

    ``hooks``: the test hooks (crash points, safeguards switched off) handed to every part that has
    hook points; default: read from the environment (``esb.test_hooks``), none in production. A part
    with hook points gets them from here by injection: ``hooks.checkpoint`` as its checkpoint,
    ``hooks.safeguard_off(name)`` for a switch (the relay: ``outbox_relay``; routes and consumer alike).
    Raises ``ConfigError`` (``TestHooksError``) for malformed hooks or an unknown route in
    ``worker.routes``.
    """

    def __init__(self, settings: EsbSettings, *, hooks: TestHooks | None = None) -> None:
        self.settings = settings
        self.hooks = hooks if hooks is not None else TestHooks.from_environ(os.environ)
        if self.hooks.active:
            log.warning("test hooks active: this process may kill itself on purpose", hooks=self.hooks.describe())
        assert settings.database_url is not None  # filled in by the settings validator
        self.engine = create_db_engine(settings.database_url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)
        self.crm = CrmService(self.sessions)
        self.transport = build_transport(settings)
        #: this process's Prometheus metrics (their own registry), served by ``esb.observability``
        self.metrics = Metrics()
        self.erp = ErpClient(settings.erp, metrics=self.metrics.backoffice("erp"))
        #: the material master pull: the first at start (by the command), then the worker's thread
        self.material_sync = MaterialSyncSchedule(
            partial(sync_materials, self.crm, self.erp), interval=settings.worker.material_sync_seconds
        )
        self.routes: list[Route] = all_routes(
            self.crm,
            self.erp,
            envelope_publisher(self.transport),
            checkpoint=self.hooks.checkpoint,
            idempotency_keys=not self.hooks.safeguard_off("no_idempotency_key"),
        )
        self.dead_letter_routes: list[DeadLetterRoute] = dead_letter_routes(
            self.crm,
            self.sessions,
            namespace=settings.namespace,
            route_names=[r.name for r in self.routes],
            checkpoint=self.hooks.checkpoint,
        )
        try:
            settings.worker.check_route_names([r.name for r in self.routes] + [r.name for r in self.dead_letter_routes])
        except ConfigError:
            self.close()
            raise
        schedules = [self.retry_schedule(r) for r in self.routes]
        schedules += [self.retry_schedule(r) for r in self.dead_letter_routes]
        self.topology = topology(
            settings.namespace,
            self.routes,
            self.dead_letter_routes,
            shards=settings.worker.shards,
            retry_delays=sorted({delay for schedule in schedules for delay in schedule}),
        )
        self.transport.declare(self.topology)
        log.info(
            "application ready",
            transport=settings.transport,
            database=redact_database_url(self.engine.url),
            routes=[r.name for r in self.routes] + [r.name for r in self.dead_letter_routes],
        )

    def retry_schedule(self, route: Route | DeadLetterRoute) -> tuple[float, ...]:
        """The delayed retries of ``route``: ``worker.routes.<name>.retry_schedule``, else the worker's
        ``retry_schedule`` for a route and the route's own for a dead-letter subscriber (which must outlast
        a CRM outage: ``flows.order_failures.RETRY_SCHEDULE``)."""
        override = self.settings.worker.routes.get(route.name)
        if override is not None and override.retry_schedule is not None:
            return tuple(override.retry_schedule)
        if isinstance(route, Route):
            return tuple(self.settings.worker.retry_schedule)
        return route.retry_schedule

    def queue_of(self, route: Route | DeadLetterRoute) -> str:
        return queue_name(self.settings.namespace, route)

    def outbox_relay(self) -> OutboxRelay:
        transport = self.transport

        def publish(events: Sequence[PendingEvent]) -> None:
            transport.publish(
                [
                    OutgoingMessage(
                        routing_key=e.event_type, body=e.body, message_id=e.message_id, partition_key=e.subject
                    )
                    for e in events
                ]
            )

        return OutboxRelay(
            self.sessions,
            publish,
            batch_size=self.settings.worker.outbox_batch_size,
            checkpoint=self.hooks.checkpoint,
            mark_before_publish=self.hooks.safeguard_off("mark_before_publish"),
        )

    def close(self) -> None:
        self.transport.close()
        self.engine.dispose()

    def __enter__(self) -> Application:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["Application", "build_transport"]
