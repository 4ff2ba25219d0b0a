"""The ERP's own fault, raised by business code and turned into a SOAP fault at the edge."""

from __future__ import annotations

# Business fault codes (docs/erp-service.md); SCHEMA_INVALID is the request-validation code.
UNKNOWN_COUNTRY = "UNKNOWN_COUNTRY"
UNKNOWN_MATERIAL = "UNKNOWN_MATERIAL"
UNKNOWN_UNIT = "UNKNOWN_UNIT"
UNKNOWN_CUSTOMER = "UNKNOWN_CUSTOMER"
NOT_FOUND = "NOT_FOUND"
CREDIT_BLOCK = "CREDIT_BLOCK"
INVALID_DATA = "INVALID_DATA"
SCHEMA_INVALID = "SCHEMA_INVALID"
# Refused before the Body is read (docs/erp-service.md, "Request limits" and "Other faults").
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"  # HTTP 413
REQUEST_TOO_COMPLEX = "REQUEST_TOO_COMPLEX"  # past max_elements, max_depth, max_attributes or max_total_attributes
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"  # HTTP 415: not text/xml
VERSION_MISMATCH = "VERSION_MISMATCH"  # soap:VersionMismatch, no detail
MUST_UNDERSTAND = "MUST_UNDERSTAND"  # soap:MustUnderstand, no detail
# soap:Server codes: the ERP itself failed (or was told to).
INTERNAL_ERROR = "INTERNAL_ERROR"
INJECTED_FAULT = "INJECTED_FAULT"


class ErpFault(Exception):
    """A refusal with the ``ErpFault`` detail: ``soap:Client`` unless ``server`` is true.

    ``field`` is the dotted path inside the request (``ITEMS.ITEM[1].MATNR``, 0-based positions).
    """

    def __init__(
        self, code: str, text: str, *, field: str | None = None, value: object = None, server: bool = False
    ) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.field = field
        self.value = None if value is None else str(value)
        self.server = server


__all__ = [
    "CREDIT_BLOCK",
    "INJECTED_FAULT",
    "INTERNAL_ERROR",
    "INVALID_DATA",
    "MUST_UNDERSTAND",
    "NOT_FOUND",
    "REQUEST_TOO_COMPLEX",
    "REQUEST_TOO_LARGE",
    "SCHEMA_INVALID",
    "UNKNOWN_COUNTRY",
    "UNKNOWN_CUSTOMER",
    "UNKNOWN_MATERIAL",
    "UNKNOWN_UNIT",
    "UNSUPPORTED_MEDIA_TYPE",
    "VERSION_MISMATCH",
    "ErpFault",
]
