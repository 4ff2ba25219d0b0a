"""The one place where requests' and zeep's errors become crm-esb's (``canonical_model.errors``).

    requests Timeout                       -> ConnectorTimeout        (transient)
    requests ConnectionError               -> BackOfficeUnavailable   (transient)
    HTTP 5xx without a SOAP fault          -> BackOfficeUnavailable   (transient)
    soap:Server fault                      -> BackOfficeUnavailable   (transient)
    unreadable answer (not XML / not SOAP) -> BackOfficeUnavailable   (transient)
    any other requests error               -> BackOfficeUnavailable   (transient)
    soap:Client fault, ErpFault detail     -> BusinessRejection(code, field, value)
    soap:Client fault SCHEMA_INVALID/other -> RequestRejected
    HTTP 4xx (401 ...)                     -> RequestRejected
    request not buildable from the WSDL    -> RequestRejected

Which failures are retried inside the connector is decided here too (``retryable``): transport
failures only, never a SOAP fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3.exceptions
import zeep.exceptions
from lxml import etree

from canonical_model.errors import (
    BackOfficeUnavailable,
    BusinessRejection,
    ConnectorTimeout,
    EsbError,
    RequestRejected,
)

SYSTEM = "erp"
NAMESPACE = "urn:crm-esb:erp:v1"
SCHEMA_INVALID = "SCHEMA_INVALID"
#: HTTP statuses after which the same request may well succeed
RETRY_STATUSES = frozenset({502, 503, 504})


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed exchange, if the error carries one."""
    if isinstance(exc, zeep.exceptions.TransportError):
        return int(exc.status_code) if exc.status_code else None
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code
    return None


def retryable(exc: BaseException) -> bool:
    """A transport failure: connection refused/reset, timeout, HTTP 502/503/504. Never a SOAP fault."""
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return True
    return http_status(exc) in RETRY_STATUSES


def never_sent(exc: BaseException) -> bool:
    """A failure after which the ERP certainly did not process the request (safe to retry anything)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the real cause
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return http_status(exc) == 503


def erp_fault_detail(detail: Any) -> dict[str, str | None] | None:
    """CODE/TEXT/FIELD/VALUE of the ``erp:ErpFault`` inside a fault's detail element."""
    if not isinstance(detail, etree._Element):
        return None
    node = detail if etree.QName(detail).localname == "ErpFault" else detail.find(f"{{{NAMESPACE}}}ErpFault")
    if node is None:
        return None
    return {etree.QName(child).localname: child.text for child in node if isinstance(child.tag, str)}


Where = dict[str, str | None]


def _fault(exc: zeep.exceptions.Fault, where: Where) -> EsbError:
    kind = str(exc.code or "").rpartition(":")[2]
    detail = erp_fault_detail(exc.detail)
    if kind == "Server":
        return BackOfficeUnavailable(f"ERP failed: {exc.message}", **where)
    if kind != "Client" or detail is None or detail.get("CODE") in (None, SCHEMA_INVALID):
        # SCHEMA_INVALID, MustUnderstand, VersionMismatch, or a fault without our detail: the request itself
        return RequestRejected(f"ERP refused the request: {exc.message}", **where)
    return BusinessRejection(
        detail.get("TEXT") or str(exc.message),
        code=str(detail["CODE"]),
        field=detail.get("FIELD"),
        value=detail.get("VALUE"),
        **where,
    )


def _status(exc: BaseException, where: Where) -> EsbError:
    status = http_status(exc)
    if status is not None and 400 <= status < 500:
        hint = " (check the ERP user and password)" if status in (401, 403) else ""
        return RequestRejected(f"ERP answered HTTP {status}{hint}", **where)
    return BackOfficeUnavailable(f"ERP answered HTTP {status}", **where)


#: first match wins: (library error, how to say it in crm-esb's terms)
TRANSLATIONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[..., EsbError]], ...] = (
    (requests.Timeout, lambda exc, where: ConnectorTimeout(f"ERP did not answer in time: {exc}", **where)),
    (requests.ConnectionError, lambda exc, where: BackOfficeUnavailable(f"ERP unreachable: {exc}", **where)),
    (zeep.exceptions.Fault, _fault),
    ((zeep.exceptions.TransportError, requests.HTTPError), _status),
    (
        (zeep.exceptions.ValidationError, TypeError),  # zeep raises TypeError for an element the WSDL lacks
        lambda exc, where: RequestRejected(f"request does not match the ERP's WSDL: {exc}", **where),
    ),
    (
        (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError, etree.XMLSyntaxError),
        lambda exc, where: BackOfficeUnavailable(f"unreadable answer from the ERP: {exc}", **where),
    ),
    # anything else requests raises (broken chunked answer, ...) is a failed exchange too
    (requests.RequestException, lambda exc, where: BackOfficeUnavailable(f"ERP exchange failed: {exc}", **where)),
)


def translate(exc: BaseException, operation: str, correlation_id: str | None) -> EsbError | None:
    where: Where = {"system": SYSTEM, "operation": operation, "correlation_id": correlation_id}
    for types, make in TRANSLATIONS:
        if isinstance(exc, types):
            return make(exc, where)
    return None


@contextmanager
def translated(operation: str, correlation_id: str | None) -> Iterator[None]:
    """Re-raise library errors from the block as crm-esb errors, the original kept as ``__cause__``."""
    try:
        yield
    except EsbError:
        raise
    except Exception as exc:
        error = translate(exc, operation, correlation_id)
        if error is None:
            raise
        raise error from exc


__all__ = [
    "RETRY_STATUSES",
    "SYSTEM",
    "TRANSLATIONS",
    "erp_fault_detail",
    "http_status",
    "never_sent",
    "retryable",
    "translate",
    "translated",
]
