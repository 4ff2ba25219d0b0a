"""Make sure a CRM customer exists in the ERP, and remember its ERP number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from canonical_model.errors import BusinessRejection, MappingError
from canonical_model.party import Customer
from connectors.erp.client import ErpClient
from crm_core.errors import StaleCrossReference
from crm_core.services import CrmService
from mappings import load_mapping

SYSTEM = "erp"
ENTITY = "customer"
#: canonical paths of the customer, seen from an order (``customer.name``)
PREFIX = "customer."
#: the ERP's fault codes for a customer number it does not have
UNKNOWN_CUSTOMER_CODES = frozenset({"NOT_FOUND", "UNKNOWN_CUSTOMER"})


class VerifiedLinks:
    """The (CRM id, ERP number) links this process has checked against the ERP, at most ``limit`` of them.

    A link is checked once (one GetCustomer: the ERP customer's EXTREF must be the CRM id), then trusted
    until the process restarts or the set is full (then it starts over): a reset ERP that reuses its
    numbers is caught before an order is booked to another customer's account.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._links: set[tuple[str, str]] = set()
        self._limit = limit

    def __contains__(self, link: tuple[str, str]) -> bool:
        return link in self._links

    def add(self, link: tuple[str, str]) -> None:
        if len(self._links) >= self._limit:
            self._links.clear()
        self._links.add(link)


def verify_link(erp: ErpClient, crm_id: str, kunnr: str, *, correlation_id: str | None) -> None:
    """Raise ``StaleCrossReference`` unless the ERP's customer ``kunnr`` is the CRM's ``crm_id`` (its EXTREF)."""
    try:
        record = erp.get_customer(kunnr, correlation_id=correlation_id)
    except BusinessRejection as exc:
        if exc.code in UNKNOWN_CUSTOMER_CODES:
            raise StaleCrossReference(SYSTEM, ENTITY, crm_id=crm_id, external_id=kunnr, actual_crm_id=None) from exc
        raise
    extref = record.get("EXTREF")
    actual = str(extref).strip(" ") if extref is not None else None
    if actual != crm_id:
        raise StaleCrossReference(SYSTEM, ENTITY, crm_id=crm_id, external_id=kunnr, actual_crm_id=actual or None)


@dataclass(frozen=True)
class ErpCustomer:
    """The customer's ERP number, and whether this call created the ERP customer (with the snapshot given)."""

    kunnr: str
    created: bool


def ensure_erp_customer(
    crm: CrmService,
    erp: ErpClient,
    customer: Customer,
    *,
    correlation_id: str | None,
    verified: VerifiedLinks | None = None,
    claim_message_id: str | None = None,
    known: str | None = None,
) -> str:
    """The customer's ERP number, creating the ERP customer first if the CRM has no cross-reference.

    Raises MappingError with the path under ``customer.`` (``customer.name``) when the customer cannot
    be mapped (e.g. a name with a character XML 1.0 cannot carry), before any ERP call, and
    BusinessRejection in canonical terms when the ERP refuses it.

    With ``verified``, a link the CRM already holds is checked against the ERP once (``verify_link``):
    ``StaleCrossReference`` when the ERP's number now names another customer or none.

    With ``claim_message_id`` (the message that needs the customer), a create first claims the
    snapshot's version for the ERP customer sync (``CrmService.claim_erp_customer_version``), so that
    the sync leaves out the older versions it has not sent yet instead of sending them after this one.

    ``known``: the customer's ERP number as the caller read it from the CRM already (None: read here).

    Safe to repeat: the ERP's create is idempotent on the CRM id (EXTREF), so a crash between the
    ERP call and the cross-reference write is healed by the redelivery.
    """
    return erp_customer_of(
        crm,
        erp,
        customer,
        correlation_id=correlation_id,
        verified=verified,
        claim_message_id=claim_message_id,
        known=known,
    ).kunnr


def erp_customer_of(
    crm: CrmService,
    erp: ErpClient,
    customer: Customer,
    *,
    correlation_id: str | None,
    verified: VerifiedLinks | None = None,
    idempotency_key: str | None = None,
    claim_message_id: str | None = None,
    known: str | None = None,
) -> ErpCustomer:
    """``ensure_erp_customer``, saying whether this call created the ERP customer; a create carries
    ``idempotency_key`` (the ERP records it with the snapshot's VERSION)."""
    if known is None:
        known = crm.cross_reference(SYSTEM, ENTITY, customer.id)
    if known is not None:
        if verified is not None and (customer.id, known) not in verified:
            verify_link(erp, customer.id, known, correlation_id=correlation_id)
            verified.add((customer.id, known))
        return ErpCustomer(known, created=False)
    mapping = load_mapping("erp_customer")
    try:
        request = mapping.to_target(customer)
    except MappingError as exc:
        # the order route reports fields from the order's point of view: the customer's are under customer.
        raise MappingError(f"{PREFIX}{exc.path}", exc.value, exc.reason, mapping=exc.mapping) from exc
    if claim_message_id is not None:
        # a newer version claimed already: the customer sync creates or will update it; this create
        # (a no-op if the ERP has the EXTREF) only makes sure the order has a customer
        crm.claim_erp_customer_version(customer.id, customer.version, message_id=claim_message_id, count_skip=False)
    try:
        result = erp.create_customer(request, idempotency_key=idempotency_key, correlation_id=correlation_id)
    except BusinessRejection as exc:
        raise in_canonical_terms(exc, mapping.canonical_path, prefix=PREFIX) from exc
    crm.record_cross_reference(SYSTEM, ENTITY, customer.id, result.kunnr)
    if verified is not None:
        verified.add((customer.id, result.kunnr))  # the ERP just answered for this CRM id
    return ErpCustomer(result.kunnr, created=result.created)


def in_canonical_terms(
    exc: BusinessRejection, canonical_path: Callable[[str], str | None], *, prefix: str = ""
) -> BusinessRejection:
    """Restate a back office's field-level fault with the canonical field path and the value."""
    path = canonical_path(exc.field) if exc.field else None
    if path is None:
        return exc
    return BusinessRejection(
        f"{exc.message} [{prefix}{path}={exc.value!r}]",
        code=exc.code,
        field=f"{prefix}{path}",
        value=exc.value,
        system=exc.system,
        operation=exc.operation,
        correlation_id=exc.correlation_id,
    )


__all__ = [
    "ENTITY",
    "SYSTEM",
    "ErpCustomer",
    "VerifiedLinks",
    "ensure_erp_customer",
    "erp_customer_of",
    "in_canonical_terms",
    "verify_link",
]
