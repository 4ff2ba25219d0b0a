"""Every route of the product, wired to its dependencies."""

from __future__ import annotations

from collections.abc import Callable, Collection

from sqlalchemy.orm import Session, sessionmaker

from connectors.erp.client import ErpClient
from connectors.publishing import EnvelopePublisher
from crm_core.services import CrmService
from flows.customer_sync import customer_to_erp_route
from flows.failed_messages import failed_messages_route
from flows.order_failures import order_failures_route
from flows.order_outcome import order_outcome_route
from flows.order_to_erp import order_to_erp_route
from flows.routes import DeadLetterRoute, Route


def _no_checkpoint(name: str) -> None:
    return None


def all_routes(
    crm: CrmService,
    erp: ErpClient,
    publish: EnvelopePublisher,
    *,
    checkpoint: Callable[[str], None] = _no_checkpoint,
    idempotency_keys: bool = True,
) -> list[Route]:
    """Every route; ``checkpoint`` and ``idempotency_keys`` are test hooks (``esb.test_hooks``)."""
    return [
        customer_to_erp_route(crm, erp),
        order_to_erp_route(crm, erp, publish, checkpoint=checkpoint, idempotency_keys=idempotency_keys),
        order_outcome_route(crm),
    ]


def dead_letter_routes(
    crm: CrmService,
    sessions: sessionmaker[Session],
    *,
    namespace: str = "esb",
    route_names: Collection[str] = (),
    checkpoint: Callable[[str], None] = _no_checkpoint,
) -> list[DeadLetterRoute]:
    """The routes reading the dead letter channel, each through its own queue: the CRM order's ``failed``
    status, and the failed-message store (``route_names``: the routes whose queues' dead letters it
    names by route, under ``namespace``)."""
    return [
        order_failures_route(crm),
        failed_messages_route(sessions, namespace=namespace, route_names=route_names, checkpoint=checkpoint),
    ]


__all__ = ["all_routes", "dead_letter_routes"]
