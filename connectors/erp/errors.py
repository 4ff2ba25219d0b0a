"""The one place where requests', zeep's and lxml's errors become crm-esb's (``canonical_model.errors``).

The table (``TRANSLATIONS``, first match wins; a test walks every subclass of each library's base
error through it)::

    requests Timeout                                -> ConnectorTimeout        (transient)
    requests ConnectionError, TooManyRedirects, ... -> BackOfficeUnavailable   (transient)
    requests InvalidHeader / InvalidURL / ...       -> RequestRejected         (this request cannot be sent)
    SOAP fault, code Server.* / Receiver.*          -> BackOfficeUnavailable   (transient)
    SOAP fault, code Client.* / Sender.* with the
      ERP's ErpFault detail (not a request code)    -> BusinessRejection(code, field, value)
    any other SOAP fault (SCHEMA_INVALID, REQUEST_TOO_*,
      UNSUPPORTED_MEDIA_TYPE, no detail,
      VersionMismatch, unknown code or namespace)   -> RequestRejected         (naming the fault code)
    answer over max_answer_bytes (AnswerTooLarge)   -> AnswerOverLimit, a RequestRejected (the same request
                                                       gets the same answer; a paged read halves its page)
    answer over max_answer_elements (counted before
      parsing, AnswerTooManyElements)               -> AnswerOverLimit, the same (naming the setting)
    WSDL document over max_wsdl_bytes or
      max_answer_elements                           -> RequestRejected
    call deadline or retry budget passed            -> ConnectorTimeout        (naming the limit)
    HTTP 3xx (redirects are never followed)         -> RequestRejected         (naming status and Location)
    WSDL/schema location outside the WSDL's
      directory (LocationRefused)                   -> RequestRejected         (naming the location)
    answer with a DTD, entities or an external
      reference (zeep's *Forbidden)                 -> RequestRejected         (naming zeep's error: a hostile
                                                       or broken ERP sends it again)
    HTTP 5xx, 408 or 429 without a SOAP fault       -> BackOfficeUnavailable   (naming status and content type;
                                                       retried, a Retry-After waited within the budget)
    other HTTP 4xx without a SOAP fault             -> RequestRejected         (naming status and content type)
    answer unreadable (not XML, not a SOAP envelope,
      unexpected element, bad WSDL)                 -> BackOfficeUnavailable   (with the parser's reason: the
                                                       ERP may have committed; the idempotency key makes
                                                       the retry safe)
    an answer value zeep cannot convert
      (UnconvertibleValue, raised by the client for
      zeep's decimal.InvalidOperation/ValueError)   -> UnreadableAnswerValue, a BackOfficeUnavailable
                                                       (naming field path and value; CreateSalesOrder and
                                                       the material feed read such an answer by hand instead)
    WSDL without the ERP's binding (WsdlUnusable:
      a proxy's HTML page, an empty definitions)    -> BackOfficeUnavailable   (not kept: read again next call)
    request does not fit the WSDL (zeep
      ValidationError, TypeError, LookupError ...)  -> RequestRejected
    text XML 1.0 cannot carry (lxml ValueError)     -> MappingError(ERP field path, value)
    any other lxml error                            -> RequestRejected
    any other zeep error / requests error           -> RequestRejected / BackOfficeUnavailable

A fault code is classified by the first segment of its local name (SOAP 1.1 section 4.4.1 dot
notation: ``soap:Server.userException`` is a Server fault); a prefix that names a namespace other
than SOAP's makes the code unknown. The prefix is resolved with the namespaces in scope at the
``faultcode`` element of the raw answer (the client hands them over as ``Fault.code_scope``), so
whether a ``<detail>`` is present does not matter; an undeclared prefix is unknown too. Whether an
HTTP failure holds a SOAP fault at all is decided by ``connectors.erp.transport`` (``NotSoapAnswer``),
which sees the status and the content type.

Which failures are retried inside the connector is decided here too (``retryable``): transport
failures only (408, 429, 502, 503, 504 among HTTP statuses), never a SOAP fault. Every text taken
from the answer or the request is clipped to ``TEXT_LIMIT`` characters (with a marker) before it
goes into a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    MappingError,
    RequestRejected,
)
from connectors.erp.transport import (
    SOAP11_ENVELOPE_NS,
    AnswerTooLarge,
    LocationRefused,
    NotSoapAnswer,
    RedirectRefused,
    describe_body,
)

SYSTEM = "erp"
NAMESPACE = "urn:crm-esb:erp:v1"
SCHEMA_INVALID = "SCHEMA_INVALID"
#: ErpFault codes that refuse the request itself (its shape, size or media type), not its business content
REQUEST_FAULT_CODES = frozenset(
    {SCHEMA_INVALID, "REQUEST_TOO_LARGE", "REQUEST_TOO_COMPLEX", "UNSUPPORTED_MEDIA_TYPE", "VERSION_MISMATCH"}
)
#: HTTP statuses after which the same request may well succeed: 502/503/504, and a proxy's
#: 408 Request Timeout / 429 Too Many Requests (retry later by definition, RFC 9110 / RFC 6585)
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: characters of outside text (fault strings, parser messages, values) kept in a message
TEXT_LIMIT = 200
SOAP12_ENVELOPE_NS = "http://www.w3.org/2003/05/soap-envelope"
#: fault code classes (first segment of the local name), SOAP 1.1 names and their SOAP 1.2 twins
SERVER_FAULTS = frozenset({"Server", "Receiver"})
CLIENT_FAULTS = frozenset({"Client", "Sender"})
#: characters outside XML 1.0's Char production (lxml refuses them with a ValueError)
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class UnconvertibleValue(Exception):
    """zeep could not convert a value of the ERP's answer (``1,250.00`` as ``xsd:decimal``).

    Raised by the client in place of zeep's ``decimal.InvalidOperation`` / ``ValueError``;
    ``path`` names the element below the response element (``CUSTOMER.KLIMK``), ``text`` its text.
    """

    def __init__(self, path: str, text: str | None, reason: str) -> None:
        super().__init__(f"{path}={clip(repr(text), 80)}: {reason}")
        self.path = path
        self.text = text
        self.reason = reason


class WsdlUnusable(Exception):
    """The WSDL document was read but is not the ERP's (a proxy's HTML page, an empty definitions).

    ``what`` describes the document (``<html> document``); nothing of it is kept.
    """

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what


class UnreadableAnswerValue(BackOfficeUnavailable):
    """A value in the ERP's answer cannot be read as its type: ``field`` (the ERP's path) and ``value`` (clipped).

    Transient like any unreadable answer (issue 6 case 6): the ERP, or the proxy that garbled it,
    may answer readably later; the caller's retry and delivery limit bound it.
    """

    def __init__(self, message: str, *, field: str, value: str | None, **where: str | None) -> None:
        super().__init__(message, **where)
        self.field = field
        self.value = value


class AnswerOverLimit(RequestRejected):
    """The ERP's answer exceeds ``max_answer_bytes`` or ``max_answer_elements`` (``setting``, ``limit``):
    the same request would get it again.

    A paged read catches it and asks for fewer rows; ``record`` names the record when one alone is too big.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        record: str | None = None,
        setting: str = "max_answer_bytes",
        **where: str | None,
    ) -> None:
        super().__init__(message, **where)
        self.limit = limit
        self.record = record
        #: the limit passed: ``max_answer_bytes`` or ``max_answer_elements``
        self.setting = setting


def clip(text: object, limit: int = TEXT_LIMIT) -> str:
    """``str(text)`` cut to ``limit`` characters, marked when cut."""
    value = str(text)
    return value if len(value) <= limit else f"{value[:limit]}...[{len(value) - limit} more chars]"


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


@dataclass(frozen=True)
class Call:
    """What a translation may name: the operation, the correlation id and the request's parameters."""

    operation: str
    correlation_id: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> Where:
        return {"system": SYSTEM, "operation": self.operation, "correlation_id": self.correlation_id}


def fault_class(code: object, detail: Any = None, scope: Mapping[str | None, str] | None = None) -> str | None:
    """The first segment of a fault code's local name (``soap:Server.userException`` -> ``Server``).

    ``None`` when the code is empty or its prefix names a namespace other than SOAP 1.1's or
    1.2's: such a code is the server's own, not one of SOAP's classes. ``scope`` is the namespaces
    in scope at the fault code element itself (read from the raw answer); a prefix not declared
    there is unknown too. Without ``scope`` (no raw answer) the prefix is resolved through
    ``detail``'s in-scope namespaces, when there is a detail element. Clark notation
    (``{ns}local``) works too.
    """
    text = str(code or "").strip()
    namespace: str | None = None
    if text.startswith("{"):
        namespace, _, local = text[1:].partition("}")
    else:
        prefix, colon, local = text.rpartition(":")
        if colon and scope is not None:
            namespace = scope.get(prefix, "")  # "": an undeclared prefix is no namespace of SOAP's
        elif colon and isinstance(detail, etree._Element):
            namespace = detail.nsmap.get(prefix)
    if namespace is not None and namespace not in (SOAP11_ENVELOPE_NS, SOAP12_ENVELOPE_NS):
        return None
    return local.split(".", 1)[0] or None


def _fault(exc: zeep.exceptions.Fault, call: Call) -> EsbError:
    # the client puts the namespaces in scope at the raw answer's faultcode element here
    kind = fault_class(exc.code, exc.detail, getattr(exc, "code_scope", None))
    detail = erp_fault_detail(exc.detail)
    code = clip(exc.code or "no fault code", 80)
    said = clip(exc.message or "")
    if kind in SERVER_FAULTS:
        return BackOfficeUnavailable(f"ERP failed ({code}): {said}", **call.where)
    if kind in CLIENT_FAULTS and detail is not None and detail.get("CODE") not in (None, *REQUEST_FAULT_CODES):
        return BusinessRejection(
            clip(detail.get("TEXT") or said),
            code=clip(detail["CODE"], 80),
            field=None if detail.get("FIELD") is None else clip(detail["FIELD"], 120),
            value=None if detail.get("VALUE") is None else clip(detail["VALUE"]),
            **call.where,
        )
    # SCHEMA_INVALID, MustUnderstand, VersionMismatch, a Client fault without our detail, or a code
    # we cannot classify: the request itself, and an operator should see the code
    erp_code = f" [{clip(detail['CODE'], 80)}]" if detail and detail.get("CODE") else ""
    return RequestRejected(f"ERP refused the request ({code}){erp_code}: {said}", **call.where)


def _too_large(exc: AnswerTooLarge, call: Call) -> EsbError:
    if exc.document:  # the WSDL or a schema: fewer rows would not help
        return RequestRejected(f"ERP WSDL document too large: {exc}", **call.where)
    return AnswerOverLimit(f"ERP answer too large: {exc}", limit=exc.limit, setting=exc.setting, **call.where)


def _status(exc: BaseException, call: Call) -> EsbError:
    status = http_status(exc)
    if isinstance(exc, NotSoapAnswer):
        said = f"ERP answered HTTP {status} ({clip(exc.content_type or 'no content type', 80)}) with {clip(exc.what)}"
    elif isinstance(exc, zeep.exceptions.TransportError) and exc.content is not None:
        # zeep's "invalid XML" path: say why, in the parser's words
        said = f"unreadable answer from the ERP (HTTP {status}): {clip(describe_body(exc.content)[1])}"
    else:
        said = f"ERP answered HTTP {status}"
    if status is not None and 400 <= status < 500 and status not in RETRY_STATUSES:
        hint = " (check the ERP user and password)" if status in (401, 403) else ""
        return RequestRejected(f"{said}{hint}", **call.where)
    return BackOfficeUnavailable(said, **call.where)


def unencodable_text(request: Any, path: str = "") -> tuple[str, str, int] | None:
    """(field path, text, position) of the first string in ``request`` holding a character XML 1.0 cannot carry.

    Paths are the ERP's, as in its fault details: ``CUSTOMER.NAME1``, ``ITEMS.ITEM[0].MATNR``.
    """
    if isinstance(request, str):
        found = NOT_XML_CHAR.search(request)
        return (path, request, found.start()) if found else None
    if isinstance(request, Mapping):
        items: Iterator[tuple[str, Any]] = ((f"{path}.{key}" if path else str(key), v) for key, v in request.items())
    elif isinstance(request, list | tuple):
        items = ((f"{path}[{index}]", v) for index, v in enumerate(request))
    else:
        return None
    for where, value in items:
        found_in = unencodable_text(value, where)
        if found_in is not None:
            return found_in
    return None


def _unencodable(exc: ValueError, call: Call) -> EsbError | None:
    """lxml refused text of the request: name the field and the value; any other ValueError is a bug."""
    found = unencodable_text(call.request)
    if found is None:
        if str(exc).startswith("All strings must be XML compatible"):
            return RequestRejected(f"request holds text XML 1.0 cannot carry: {clip(exc)}", **call.where)
        return None
    path, text, position = found
    shown = clip(text, 120)
    error = MappingError(
        path,
        shown,
        f"U+{ord(text[position]):04X} at position {position} cannot be carried in XML 1.0 (ERP {call.operation})",
    )
    error.system, error.operation, error.correlation_id = SYSTEM, call.operation, call.correlation_id
    return error


def unreadable_value(path: str, text: str | None, reason: str, call: Call) -> UnreadableAnswerValue:
    """The named error for an answer value that cannot be read (``path`` and ``text`` clipped)."""
    field_, value = clip(path, 120), None if text is None else clip(text, 80)
    return UnreadableAnswerValue(
        f"unreadable value in the ERP's answer: {field_}={value!r} ({clip(reason, 120)})",
        field=field_,
        value=value,
        **call.where,
    )


def _unconvertible(exc: UnconvertibleValue, call: Call) -> EsbError:
    return unreadable_value(exc.path, exc.text, exc.reason, call)


def _said(template: str, make: type[EsbError]) -> Callable[[BaseException, Call], EsbError]:
    def translation(exc: BaseException, call: Call) -> EsbError:
        return make(template.format(kind=type(exc).__name__, error=clip(str(exc) or repr(exc))), **call.where)

    return translation


Translation = Callable[[Any, Call], EsbError | None]

#: first match wins: (library error, how to say it in crm-esb's terms); a translation returning
#: None leaves the error as it is (a bug, "unexpected")
TRANSLATIONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Translation], ...] = (
    (requests.Timeout, _said("ERP did not answer in time: {error}", ConnectorTimeout)),
    (requests.ConnectionError, _said("ERP unreachable: {error}", BackOfficeUnavailable)),
    (
        # built from our settings or input (a correlation id with a line break): no retry can help
        (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.URLRequired,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ),
        _said("ERP request cannot be sent ({kind}): {error}", RequestRejected),
    ),
    (zeep.exceptions.Fault, _fault),
    (UnconvertibleValue, _unconvertible),
    (WsdlUnusable, _said("ERP WSDL unusable (a proxy's page?): {error}", BackOfficeUnavailable)),
    (AnswerTooLarge, _too_large),
    (RedirectRefused, _said("ERP answer refused: {error}", RequestRejected)),
    (LocationRefused, _said("ERP WSDL refused: {error}", RequestRejected)),
    (
        (
            zeep.exceptions.DTDForbidden,
            zeep.exceptions.EntitiesForbidden,
            zeep.exceptions.ExternalReferenceForbidden,
        ),
        _said("ERP answer refused ({kind}): {error}", RequestRejected),
    ),
    ((zeep.exceptions.TransportError, requests.HTTPError), _status),
    (
        (
            zeep.exceptions.ValidationError,
            TypeError,  # zeep raises TypeError for an element the WSDL lacks
            zeep.exceptions.LookupError,
            zeep.exceptions.NamespaceError,
            zeep.exceptions.IncompleteOperation,
        ),
        _said("request does not match the ERP's WSDL ({kind}): {error}", RequestRejected),
    ),
    (
        (
            zeep.exceptions.XMLSyntaxError,
            zeep.exceptions.XMLParseError,
            zeep.exceptions.UnexpectedElementError,
            zeep.exceptions.IncompleteMessage,
            zeep.exceptions.SignatureVerificationFailed,
            zeep.exceptions.WsdlSyntaxError,
            etree.ParseError,
        ),
        _said("unreadable answer from the ERP ({kind}): {error}", BackOfficeUnavailable),
    ),
    # anything else requests raises (broken chunked answer, too many redirects ...) is a failed exchange
    (requests.RequestException, _said("ERP exchange failed ({kind}): {error}", BackOfficeUnavailable)),
    (ValueError, _unencodable),  # after requests': some of its errors are ValueErrors too
    # lxml errors the ERP exchange does not otherwise meet (XPath, XSLT, schema, C14N, serialisation)
    (etree.Error, _said("ERP request or answer not processable ({kind}): {error}", RequestRejected)),
    (zeep.exceptions.Error, _said("ERP exchange failed in zeep ({kind}): {error}", RequestRejected)),
)


def translate(
    exc: BaseException, operation: str, correlation_id: str | None, request: Mapping[str, Any] | None = None
) -> EsbError | None:
    """``exc`` in crm-esb's terms, or None when it is none of the library errors above (a bug)."""
    call = Call(operation, correlation_id, request or {})
    for types, make in TRANSLATIONS:
        if isinstance(exc, types):
            return make(exc, call)
    return None


@contextmanager
def translated(operation: str, correlation_id: str | None, request: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Re-raise library errors from the block as crm-esb errors, the original kept as ``__cause__``.

    ``request`` (the operation's parameters) lets a refused text be traced to its field.
    """
    try:
        yield
    except EsbError:
        raise
    except Exception as exc:
        error = translate(exc, operation, correlation_id, request)
        if error is None:
            raise
        raise error from exc


__all__ = [
    "RETRY_STATUSES",
    "SYSTEM",
    "TEXT_LIMIT",
    "TRANSLATIONS",
    "AnswerOverLimit",
    "Call",
    "UnconvertibleValue",
    "UnreadableAnswerValue",
    "WsdlUnusable",
    "clip",
    "erp_fault_detail",
    "fault_class",
    "http_status",
    "never_sent",
    "retryable",
    "translate",
    "translated",
    "unencodable_text",
    "unreadable_value",
]
