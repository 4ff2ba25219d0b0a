"""Wiring: settings -> database, CRM services, transport, ERP connector and routes."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import structlog

from connectors.base import OutgoingMessage, Transport
from connectors.erp import ErpClient
from connectors.publishing import envelope_publisher
from connectors.registry import create_transport
from connectors.urls import redact_database_url
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.outbox import OutboxRelay, PendingEvent
from crm_core.services import CrmService
from esb.config import EsbSettings
from flows.catalogue import all_routes, dead_letter_routes
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
        )
    return create_transport("embedded", url=settings.embedded_url)


class Application:
    """One process's view of crm-esb: build once, share between the worker's threads."""

    def __init__(self, settings: EsbSettings) -> None:
        self.settings = settings
        assert settings.database_url is not None  # filled in by the settings validator
        self.engine = create_db_engine(settings.database_url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)
        self.crm = CrmService(self.sessions)
        self.transport = build_transport(settings)
        self.erp = ErpClient(settings.erp)
        self.routes: list[Route] = all_routes(self.crm, self.erp, envelope_publisher(self.transport))
        self.dead_letter_routes: list[DeadLetterRoute] = dead_letter_routes(self.crm)
        self.topology = topology(
            settings.namespace, self.routes, self.dead_letter_routes, shards=settings.worker.shards
        )
        self.transport.declare(self.topology)
        log.info(
            "application ready",
            transport=settings.transport,
            database=redact_database_url(self.engine.url),
            routes=[r.name for r in self.routes] + [r.name for r in self.dead_letter_routes],
        )

    def queue_of(self, route: Route | DeadLetterRoute) -> str:
        return queue_name(self.settings.namespace, route)

    def outbox_relay(self) -> OutboxRelay:
        transport = self.transport

        def publish(events: Sequence[PendingEvent]) -> None:
            transport.publish(
                [OutgoingMessage(routing_key=e.event_type, body=e.body, message_id=e.message_id) for e in events]
            )

        return OutboxRelay(self.sessions, publish, batch_size=self.settings.worker.outbox_batch_size)

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
