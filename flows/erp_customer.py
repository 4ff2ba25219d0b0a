"""Make sure a CRM customer exists in the ERP, and remember its ERP number."""

from __future__ import annotations

from collections.abc import Callable

from canonical_model.errors import BusinessRejection, MappingError
from canonical_model.party import Customer
from connectors.erp.client import ErpClient
from crm_core.services import CrmService
from mappings import load_mapping

SYSTEM = "erp"
ENTITY = "customer"
#: canonical paths of the customer, seen from an order (``customer.name``)
PREFIX = "customer."


def ensure_erp_customer(crm: CrmService, erp: ErpClient, customer: Customer, *, correlation_id: str | None) -> str:
    """The customer's ERP number, creating the ERP customer first if the CRM has no cross-reference.

    Raises MappingError with the path under ``customer.`` (``customer.name``) when the customer cannot
    be mapped (e.g. a name with a character XML 1.0 cannot carry), before any ERP call, and
    BusinessRejection in canonical terms when the ERP refuses it.

    Safe to repeat: the ERP's create is idempotent on the CRM id (EXTREF), so a crash between the
    ERP call and the cross-reference write is healed by the redelivery.
    """
    known = crm.cross_reference(SYSTEM, ENTITY, customer.id)
    if known is not None:
        return known
    mapping = load_mapping("erp_customer")
    try:
        request = mapping.to_target(customer)
    except MappingError as exc:
        # the order route reports fields from the order's point of view: the customer's are under customer.
        raise MappingError(f"{PREFIX}{exc.path}", exc.value, exc.reason, mapping=exc.mapping) from exc
    try:
        result = erp.create_customer(request, correlation_id=correlation_id)
    except BusinessRejection as exc:
        raise in_canonical_terms(exc, mapping.canonical_path, prefix=PREFIX) from exc
    crm.record_cross_reference(SYSTEM, ENTITY, customer.id, result.kunnr)
    return result.kunnr


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


__all__ = ["ENTITY", "SYSTEM", "ensure_erp_customer", "in_canonical_terms"]
