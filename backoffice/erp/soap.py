"""SOAP 1.1 envelopes: read a request (hardened, validated against the WSDL), write a response or a fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from backoffice.erp import faults
from backoffice.erp.contract import Contract
from backoffice.erp.faults import ErpFault
from backoffice.erp.records import Record
from backoffice.erp.xmlsafe import UnsafeXml, parse_xml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
CONTENT_TYPE = "text/xml; charset=utf-8"
_NSMAP = {"soap": SOAP_ENV}


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


def read_envelope(contract: Contract, body: bytes) -> Envelope:
    try:
        root = parse_xml(body)
    except UnsafeXml as exc:
        return Envelope(None, None, _invalid(f"not a SOAP 1.1 envelope: {exc}"))
    if root.tag == f"{{{SOAP_12_ENV}}}Envelope":
        return Envelope(None, None, _invalid("SOAP 1.2 envelope received: this service speaks SOAP 1.1 only"))
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        return Envelope(None, None, _invalid(f"not a SOAP 1.1 envelope: the root element is {root.tag}"))
    bodies = root.findall(f"{{{SOAP_ENV}}}Body")
    if len(bodies) != 1:
        return Envelope(None, None, _invalid(f"a SOAP envelope needs exactly one Body, this one has {len(bodies)}"))
    header = root.find(f"{{{SOAP_ENV}}}Header")
    if header is not None:
        for entry in header:
            if entry.get(f"{{{SOAP_ENV}}}mustUnderstand") in {"1", "true"}:
                problem = ErpFault("MUST_UNDERSTAND", f"header {entry.tag} is not understood")
                return Envelope(None, None, problem)
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
    """The operation and its request as a dict; raises ``ErpFault(SCHEMA_INVALID)`` for any schema violation."""
    if envelope.problem is not None:
        raise envelope.problem
    assert envelope.operation is not None and envelope.payload is not None
    violations = contract.violations(envelope.payload)
    if violations:
        text = "; ".join(str(v) for v in violations[:5])
        raise _invalid(f"request does not match the WSDL's schema: {text}", field=violations[0].field)
    return envelope.operation, contract.parse_request(envelope.operation, envelope.payload)


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
    """A ``soap:Client`` (or ``soap:Server``) fault with the ErpFault detail."""
    node = etree.Element(f"{{{SOAP_ENV}}}Fault")
    code = "Server" if error.server else ("MustUnderstand" if error.code == "MUST_UNDERSTAND" else "Client")
    etree.SubElement(node, "faultcode").text = f"soap:{code}"
    etree.SubElement(node, "faultstring").text = f"{error.code}: {error.text}"
    detail = etree.SubElement(node, "detail")
    detail.append(
        contract.render_fault_detail(
            {"CODE": error.code, "TEXT": error.text, "FIELD": error.field, "VALUE": error.value}
        )
    )
    return _envelope(node)


__all__ = ["CONTENT_TYPE", "SOAP_ENV", "Envelope", "fault", "parse_request", "read_envelope", "response"]
