"""Route customer.created -> ERP customer; the ERP number lands in the CRM's cross-reference table."""

from __future__ import annotations

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.party import Customer
from connectors.erp.client import ErpClient
from crm_core.services import CrmService
from flows.erp_customer import ensure_erp_customer
from flows.payloads import data_of
from flows.routes import Route


class CustomerToErp:
    """A business fault (e.g. unknown country) is permanent: the message goes to the dead letter channel."""

    def __init__(self, crm: CrmService, erp: ErpClient) -> None:
        self._crm = crm
        self._erp = erp

    def __call__(self, envelope: Envelope) -> None:
        customer = data_of(envelope, Customer)
        ensure_erp_customer(self._crm, self._erp, customer, correlation_id=envelope.correlationid or envelope.id)


def customer_to_erp_route(crm: CrmService, erp: ErpClient) -> Route:
    return Route(
        name="erp.customer_sync",
        bindings=(events.CUSTOMER_CREATED,),
        handler=CustomerToErp(crm, erp),
        description="CRM customer.created -> ERP CreateCustomer; cross-reference the ERP number",
        calls=("erp",),
    )


__all__ = ["CustomerToErp", "customer_to_erp_route"]
