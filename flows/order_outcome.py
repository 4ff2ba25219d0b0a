"""Route order.confirmed / order.rejected -> the CRM order's status, once per message."""

from __future__ import annotations

import structlog

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.order import OrderConfirmed, OrderRejected
from crm_core.services import CrmService
from flows.payloads import data_of
from flows.routes import Route

log = structlog.get_logger(__name__)

CONSUMER = "crm.order_outcome"


class OrderOutcomeToCrm:
    def __init__(self, crm: CrmService) -> None:
        self._crm = crm

    def __call__(self, envelope: Envelope) -> None:
        if envelope.type == events.ORDER_CONFIRMED:
            applied = self._crm.confirm_order(
                data_of(envelope, OrderConfirmed), consumer=CONSUMER, message_id=envelope.id
            )
        else:
            applied = self._crm.reject_order(
                data_of(envelope, OrderRejected), consumer=CONSUMER, message_id=envelope.id
            )
        if not applied:
            log.info("order outcome already applied", message_id=envelope.id, type=envelope.type)


def order_outcome_route(crm: CrmService) -> Route:
    return Route(
        name="crm.order_outcome",
        bindings=(events.ORDER_CONFIRMED, events.ORDER_REJECTED),
        handler=OrderOutcomeToCrm(crm),
        description="order.confirmed / order.rejected -> CRM order status, ERP number or rejection reason",
    )


__all__ = ["CONSUMER", "OrderOutcomeToCrm", "order_outcome_route"]
