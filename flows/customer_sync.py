"""Route customer.created and customer.updated -> the ERP's customer, in version order per customer.

"Upsert at version N only if newer": before any ERP call, one CRM transaction claims version N for
the customer (``CrmService.claim_erp_customer_version``: held when no newer version was claimed; the
same version again, a redelivery, holds too). A claim that fails means a newer snapshot was sent or
is being sent: the message is acknowledged without an ERP call, logged at INFO (``stale customer
update skipped``) and counted (``erp_customer_versions.skipped``). Otherwise the ERP customer is made
to exist (``erp_customer_of``: CreateCustomer, idempotent on EXTREF, with VERSION N and the message id
as IDEMPOTENCY_KEY; a customer it created now is done) and UpdateCustomer sends the snapshot with
VERSION N and the message id as IDEMPOTENCY_KEY, which the ERP applies once however often it is
sent. A business fault (unknown country, ...) is permanent: the message goes to the dead letter channel.
"""

from __future__ import annotations

import structlog

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.errors import BusinessRejection
from canonical_model.party import Customer
from connectors.erp.client import ErpClient
from crm_core.services import CrmService
from flows.erp_customer import PREFIX, erp_customer_of, in_canonical_terms
from flows.payloads import data_of
from flows.routes import Route
from mappings import load_mapping

log = structlog.get_logger(__name__)


class CustomerToErp:
    """Sends a customer's snapshot to the ERP unless a newer one was claimed (see the module)."""

    def __init__(self, crm: CrmService, erp: ErpClient) -> None:
        self._crm = crm
        self._erp = erp
        self._mapping = load_mapping("erp_customer")

    def __call__(self, envelope: Envelope) -> None:
        customer = data_of(envelope, Customer)
        correlation_id = envelope.correlationid or envelope.id
        claim = self._crm.claim_erp_customer_version(customer.id, customer.version, message_id=envelope.id)
        if not claim.claimed:
            log.info(
                "stale customer update skipped",
                customer_id=customer.id,
                version=customer.version,
                newer_version=claim.version,
                message_id=envelope.id,
                event_type=envelope.type,
            )
            return
        erp_customer = erp_customer_of(
            self._crm, self._erp, customer, correlation_id=correlation_id, idempotency_key=envelope.id
        )
        if erp_customer.created:  # CreateCustomer carried this snapshot, its VERSION and the key
            return
        request = self._mapping.to_target(customer, context={"kunnr": erp_customer.kunnr})
        try:
            self._erp.update_customer(
                request, idempotency_key=envelope.id, version=customer.version, correlation_id=correlation_id
            )
        except BusinessRejection as exc:
            raise in_canonical_terms(exc, self._mapping.canonical_path, prefix=PREFIX) from exc


def customer_to_erp_route(crm: CrmService, erp: ErpClient) -> Route:
    return Route(
        name="erp.customer_sync",
        bindings=(events.CUSTOMER_CREATED, events.CUSTOMER_UPDATED),
        handler=CustomerToErp(crm, erp),
        description="CRM customer.created/updated -> ERP CreateCustomer/UpdateCustomer, newer versions only; "
        "cross-reference the ERP number",
        calls=("erp",),
    )


__all__ = ["CustomerToErp", "customer_to_erp_route"]
