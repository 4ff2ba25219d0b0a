"""Route order.placed -> ERP sales order -> order.confirmed | order.rejected.

A business outcome is not an error of the route: an order the ERP refuses (credit block,
unknown material) or that cannot be mapped becomes ``order.rejected`` with the reason in
canonical terms, and the message is acknowledged. Only transient failures are retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.errors import BusinessRejection, InvalidMessage, MappingError
from canonical_model.order import OrderConfirmed, OrderRejected, OrderStatus, SalesOrder
from connectors.erp.client import ErpClient
from connectors.publishing import EnvelopePublisher
from crm_core.services import CrmService, OrderContext
from flows.erp_confirmation import confirmation_of
from flows.erp_customer import SYSTEM, VerifiedLinks, ensure_erp_customer, in_canonical_terms
from flows.payloads import answers_validated, data_of
from flows.routes import Route
from mappings import load_mapping

log = structlog.get_logger(__name__)

SOURCE = "/esb/erp-orders"


#: the checkpoint after the ERP answered CreateSalesOrder, before the outcome is published (tests kill here)
AFTER_ERP_ANSWER = "route.after_erp_answer"


def _no_checkpoint(name: str) -> None:
    return None


class OrderToErp:
    """The order route's handler. ``checkpoint`` is called with ``AFTER_ERP_ANSWER`` once the ERP holds the
    order; ``idempotency_keys=False`` switches the safeguard off (a fresh key per call, for tests that must
    show a redelivery then creates a second ERP order)."""

    def __init__(
        self,
        crm: CrmService,
        erp: ErpClient,
        publish: EnvelopePublisher,
        *,
        checkpoint: Callable[[str], None] = _no_checkpoint,
        idempotency_keys: bool = True,
    ) -> None:
        self._crm = crm
        self._erp = erp
        self._publish = publish
        self._checkpoint = checkpoint
        self._idempotency_keys = idempotency_keys
        self._mapping = load_mapping("erp_sales_order")
        # customer links checked against the ERP (once each): a reset ERP reuses its numbers
        self._verified_links = VerifiedLinks()

    def __call__(self, envelope: Envelope) -> None:
        order = data_of(envelope, SalesOrder)
        # the order's status, customer and ERP customer number in one CRM session
        context = self._crm.order_context(order.id, order.customer_id, system=SYSTEM)
        # failed is not final: a replayed order.placed of a failed order is tried again
        if context.status not in (OrderStatus.PLACED, OrderStatus.FAILED):
            log.info("order already settled; redelivery ignored", order_id=order.id, message_id=envelope.id)
            return
        correlation_id = envelope.correlationid or envelope.id
        outcome: OrderConfirmed | OrderRejected
        try:
            outcome = self._confirm(order, context, correlation_id, message_id=envelope.id)
        except MappingError as exc:
            outcome = OrderRejected(order_id=order.id, reason=str(exc), code="MAPPING", field=exc.path)
        except BusinessRejection as exc:
            outcome = OrderRejected(order_id=order.id, reason=exc.message, code=exc.code, field=exc.field)
        kind = events.ORDER_CONFIRMED if isinstance(outcome, OrderConfirmed) else events.ORDER_REJECTED
        # A redelivered order.placed yields the same outcome id: the CRM applies it once.
        self._publish(Envelope.new(kind, outcome, source=SOURCE, cause=envelope, deterministic=True))

    @answers_validated("the ERP's answer to CreateSalesOrder")  # OrderConfirmed is built from it
    def _confirm(
        self, order: SalesOrder, context: OrderContext, correlation_id: str, *, message_id: str
    ) -> OrderConfirmed:
        customer = context.customer
        if customer is None:
            raise InvalidMessage(f"order {order.id} names a customer the CRM does not know")
        # a customer created here claims its version: the customer sync then leaves out older ones
        kunnr = ensure_erp_customer(
            self._crm,
            self._erp,
            customer,
            correlation_id=correlation_id,
            verified=self._verified_links,
            claim_message_id=message_id,
            known=context.external_customer_id,
        )
        request = self._mapping.to_target(order, context={"kunnr": kunnr})
        key = request["IDEMPOTENCY_KEY"] if self._idempotency_keys else f"{order.id[:20]}-{uuid.uuid4().hex[:12]}"
        try:
            result = self._erp.create_sales_order(
                key, request["HEADER"], request["ITEMS"]["ITEM"], correlation_id=correlation_id
            )
        except BusinessRejection as exc:
            raise in_canonical_terms(exc, self._mapping.canonical_path) from exc
        self._checkpoint(AFTER_ERP_ANSWER)
        # The ERP holds the order now: whatever is off in its answer, the outcome is a confirmation.
        return confirmation_of(order.id, result.order)


def order_to_erp_route(
    crm: CrmService,
    erp: ErpClient,
    publish: EnvelopePublisher,
    *,
    checkpoint: Callable[[str], None] = _no_checkpoint,
    idempotency_keys: bool = True,
) -> Route:
    return Route(
        name="erp.order_placed",
        bindings=(events.ORDER_PLACED,),
        handler=OrderToErp(crm, erp, publish, checkpoint=checkpoint, idempotency_keys=idempotency_keys),
        description="CRM order.placed -> ERP CreateSalesOrder (customer first if missing) -> order.confirmed/rejected",
        calls=("erp",),
    )


__all__ = ["AFTER_ERP_ANSWER", "OrderToErp", "order_to_erp_route"]
