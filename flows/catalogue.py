"""Every route of the product, wired to its dependencies."""

from __future__ import annotations

from collections.abc import Callable

from connectors.erp.client import ErpClient
from connectors.publishing import EnvelopePublisher
from crm_core.services import CrmService
from flows.customer_sync import customer_to_erp_route
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


def dead_letter_routes(crm: CrmService) -> list[DeadLetterRoute]:
    """The routes reading the dead letter channel, each through its own queue."""
    return [order_failures_route(crm)]


__all__ = ["all_routes", "dead_letter_routes"]
