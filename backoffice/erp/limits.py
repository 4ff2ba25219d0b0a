"""What the ERP spends on one request at most: settings of the server, with safe defaults.

The defaults leave room for the largest request the WSDL allows (a CreateSalesOrder with 999 ITEMs:
about 5,000 elements, 6 levels deep, a few namespace declarations on the envelope) and refuse
anything far beyond it before a tree is built (docs/erp-service.md, "Request limits").
"""

from __future__ import annotations

from dataclasses import dataclass

#: a request body the ERP will still read (bytes); a larger one is answered HTTP 413 unread
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
#: elements in a request document, the SOAP envelope's own included
DEFAULT_MAX_ELEMENTS = 10_000
#: nesting depth of a request document (the envelope is depth 1; an order's MATNR is depth 6)
DEFAULT_MAX_DEPTH = 32
#: attributes on one element, namespace declarations (xmlns, xmlns:p) included
DEFAULT_MAX_ATTRIBUTES = 32
#: attributes in a whole request document, namespace declarations included: one per element on
#: average (the largest valid order has about 5,000 elements and a few declarations). Without it,
#: 9,000 elements of 32 attributes each (1.9 MB) cost the server about 100 MB before the schema refused them.
DEFAULT_MAX_TOTAL_ATTRIBUTES = 10_000


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one SOAP request; each must be at least 1 (``ValueError`` otherwise).

    ``max_body_bytes``: body size in bytes (HTTP 413 beyond it). ``max_elements``, ``max_depth``,
    ``max_attributes`` (per element), ``max_total_attributes`` (in the document): the document's
    shape, checked by a scan of the raw bytes before any tree is built (``backoffice.erp.xmlsafe``);
    beyond one of them: a ``soap:Client`` fault ``REQUEST_TOO_COMPLEX`` naming the limit.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_elements: int = DEFAULT_MAX_ELEMENTS
    max_depth: int = DEFAULT_MAX_DEPTH
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES
    max_total_attributes: int = DEFAULT_MAX_TOTAL_ATTRIBUTES

    def __post_init__(self) -> None:
        names = ("max_body_bytes", "max_elements", "max_depth", "max_attributes", "max_total_attributes")
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")


__all__ = [
    "DEFAULT_MAX_ATTRIBUTES",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ELEMENTS",
    "DEFAULT_MAX_TOTAL_ATTRIBUTES",
    "RequestLimits",
]
