"""SOAP 1.1 envelopes: read a request (hardened, bounded, validated against the WSDL), write a response or a fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from backoffice.erp import faults
from backoffice.erp.contract import Contract, UnreadableValue
from backoffice.erp.faults import ErpFault
from backoffice.erp.limits import RequestLimits
from backoffice.erp.records import Record
from backoffice.erp.xmlsafe import TooComplex, UnsafeXml, parse_xml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
#: SOAP 1.1 section 4.2.2: a header entry with this actor (or none) is for the node that receives it
ACTOR_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"
CONTENT_TYPE = "text/xml; charset=utf-8"
_NSMAP = {"soap": SOAP_ENV}
# What a fault repeats of the request (element names, values, lxml's messages) is cut to these lengths.
MAX_TEXT_CHARS = 2000
MAX_FIELD_CHARS = 200
MAX_MESSAGE_CHARS = 300


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters plus a marker saying how many were left off."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


class EnvelopeFault(ErpFault):
    """A fault about the envelope, not the Body: ``faultcode`` is ``VersionMismatch`` or ``MustUnderstand``.

    It has no ``detail`` element: SOAP 1.1 section 4.4 keeps detail for errors in processing the
    Body, and forbids it for errors about header entries.
    """

    def __init__(self, faultcode: str, code: str, text: str) -> None:
        super().__init__(code, text)
        self.faultcode = faultcode


def _invalid(text: str, *, field: str | None = None) -> ErpFault:
    return ErpFault(faults.SCHEMA_INVALID, text, field=field)


@dataclass(frozen=True)
class Envelope:
    """A request as read: ``operation`` is None when the body names no operation of ours.

    ``problem`` is why the request cannot be processed (not an envelope, ...); the caller raises
    it only after counting the request and applying injected misbehaviour.
    """

    operation: str | None
    payload: etree._Element | None
    problem: ErpFault | None


def version_mismatch(received: str) -> EnvelopeFault:
    """The ``soap:VersionMismatch`` fault for a request that is ``received`` (``a SOAP 1.2 envelope``, ...)."""
    text = clip(f"{received} received: this service speaks SOAP 1.1 only ({SOAP_ENV}, text/xml)", MAX_TEXT_CHARS)
    return EnvelopeFault("VersionMismatch", faults.VERSION_MISMATCH, text)


def read_envelope(contract: Contract, body: bytes, limits: RequestLimits | None = None) -> Envelope:
    """The request in ``body``, scanned against ``limits`` (the defaults if None) before it is parsed."""
    try:
        root = parse_xml(body, limits or RequestLimits())
    except TooComplex as exc:
        return Envelope(None, None, ErpFault(faults.REQUEST_TOO_COMPLEX, str(exc), value=exc.bound))
    except UnsafeXml as exc:
        return Envelope(None, None, _invalid(f"not a SOAP 1.1 envelope: {exc}"))
    qname = etree.QName(root)
    if qname.localname == "Envelope" and qname.namespace != SOAP_ENV:
        # SOAP 1.1 section 4.4.1: an Envelope in another namespace (SOAP 1.2's, say) is a VersionMismatch
        received = "a SOAP 1.2 envelope" if qname.namespace == SOAP_12_ENV else f"an Envelope in {qname.namespace!r}"
        return Envelope(None, None, version_mismatch(received))
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        return Envelope(None, None, _invalid(f"not a SOAP 1.1 envelope: the root element is {root.tag}"))
    bodies = root.findall(f"{{{SOAP_ENV}}}Body")
    if len(bodies) != 1:
        return Envelope(None, None, _invalid(f"a SOAP envelope needs exactly one Body, this one has {len(bodies)}"))
    header = root.find(f"{{{SOAP_ENV}}}Header")
    if header is not None:
        for entry in header:
            if not isinstance(entry.tag, str) or entry.get(f"{{{SOAP_ENV}}}actor", ACTOR_NEXT) != ACTOR_NEXT:
                continue  # an entry for another node is not ours to understand
            if entry.get(f"{{{SOAP_ENV}}}mustUnderstand") in {"1", "true"}:
                text = clip(f"header {entry.tag} is not understood", MAX_TEXT_CHARS)
                return Envelope(None, None, EnvelopeFault("MustUnderstand", faults.MUST_UNDERSTAND, text))
    children = [child for child in bodies[0] if isinstance(child.tag, str)]
    if len(children) != 1 or (bodies[0].text or "").strip():
        return Envelope(None, None, _invalid(f"the Body must hold exactly one element, it holds {len(children)}"))
    payload = children[0]
    operation = contract.operation_of(payload)
    if operation is None:
        known = ", ".join(contract.operations)
        return Envelope(None, payload, _invalid(f"{payload.tag} is not a request of this service (known: {known})"))
    return Envelope(operation, payload, None)


def parse_request(contract: Contract, envelope: Envelope) -> tuple[str, Record]:
    """The operation and its request as a dict.

    Raises ``ErpFault(SCHEMA_INVALID)`` for any schema violation, ``ErpFault(INVALID_DATA)`` naming the
    field for a schema-valid value the ERP cannot hold (a year past 9999 or before 1).
    """
    if envelope.problem is not None:
        raise envelope.problem
    assert envelope.operation is not None and envelope.payload is not None
    violations = contract.violations(envelope.payload)
    if violations:
        text = "; ".join(clip(str(v), MAX_MESSAGE_CHARS) for v in violations[:5])
        raise _invalid(f"request does not match the WSDL's schema: {text}", field=violations[0].field)
    try:
        return envelope.operation, contract.parse_request(envelope.operation, envelope.payload)
    except UnreadableValue as exc:
        raise ErpFault(faults.INVALID_DATA, clip(str(exc), MAX_TEXT_CHARS), field=exc.field, value=exc.value) from None


def _envelope(content: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    body.append(content)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def response(
    contract: Contract, operation: str, values: Record, amend: Callable[[etree._Element], None] | None = None
) -> bytes:
    """The operation's response; ``amend`` may change the rendered element first (a wrong answer on purpose)."""
    content = contract.render_response(operation, values)
    if amend is not None:
        amend(content)
    return _envelope(content)


def fault(contract: Contract, error: ErpFault) -> bytes:
    """A ``soap:Client`` (or ``soap:Server``) fault with the ErpFault detail; an ``EnvelopeFault`` without one.

    Whatever the fault repeats of the request is clipped (``MAX_TEXT_CHARS``, ``MAX_FIELD_CHARS``).
    """
    node = etree.Element(f"{{{SOAP_ENV}}}Fault")
    text = clip(error.text, MAX_TEXT_CHARS)
    if isinstance(error, EnvelopeFault):
        code = error.faultcode
    else:
        code = "Server" if error.server else "Client"
    etree.SubElement(node, "faultcode").text = f"soap:{code}"
    etree.SubElement(node, "faultstring").text = f"{error.code}: {text}"
    if not isinstance(error, EnvelopeFault):
        detail = etree.SubElement(node, "detail")
        values = {
            "CODE": error.code,
            "TEXT": text,
            "FIELD": None if error.field is None else clip(error.field, MAX_FIELD_CHARS),
            "VALUE": None if error.value is None else clip(error.value, MAX_FIELD_CHARS),
        }
        detail.append(contract.render_fault_detail(values))
    return _envelope(node)


__all__ = [
    "CONTENT_TYPE",
    "SOAP_ENV",
    "Envelope",
    "EnvelopeFault",
    "clip",
    "fault",
    "parse_request",
    "read_envelope",
    "response",
    "version_mismatch",
]
