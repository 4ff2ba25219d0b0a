"""Our WSDL, loaded once: its schema (lxml, for validating requests) and its elements (zeep, for
turning request XML into dicts and response dicts into XML).

zeep is used here for its public element API only (``Client.get_element``, ``Element.parse``,
``Element.render``); the project pins zeep's version.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import zeep
from lxml import etree
from zeep.helpers import serialize_object

from backoffice.erp import NAMESPACE, WSDL_PATH
from backoffice.erp.records import Record
from backoffice.erp.xmlsafe import parse_xml

# zeep is not annotated: its two entry points, typed once here
_zeep_client: Any = zeep.Client
_serialize: Any = serialize_object

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"


class SchemaViolation:
    """One schema error: lxml's message and the dotted path of the element it is about."""

    def __init__(self, message: str, field: str | None) -> None:
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.message} (at {self.field})" if self.field else self.message


class _DropConversionErrors(logging.Filter):
    """zeep logs a value it cannot convert with a traceback that repeats it unclipped; ``UnreadableValue`` says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Error during xml -> python translation"


_DROP_CONVERSION_ERRORS = _DropConversionErrors()


class UnreadableValue(ValueError):
    """A schema-valid value the ERP cannot hold (``10000-01-01`` as an xsd:date: Python's years end at 9999).

    ``field`` is its dotted path (``HEADER.AUDAT``), ``value`` the element's text as sent.
    """

    def __init__(self, field: str, value: str) -> None:
        super().__init__(f"{field} {value!r} is valid for the WSDL's schema, but not a value this ERP can hold")
        self.field = field
        self.value = value


def _unread(node: etree._Element, parsed: object, path: str = "") -> tuple[str, str] | None:
    """The first leaf of ``node`` with text whose value in ``parsed`` (zeep's, serialized) is None.

    zeep answers None for a simple value it cannot convert (it logs the error and goes on), and
    None reads as "not sent": an order date would become today's.
    """
    seen: dict[str, int] = {}
    for child in node:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        value = parsed.get(name) if isinstance(parsed, dict) else None
        field = f"{path}.{name}" if path else name
        if isinstance(value, list):  # a repeated element: its n-th occurrence is the list's n-th value
            index = seen[name] = seen.get(name, -1) + 1
            value = value[index] if index < len(value) else None
            field = f"{field}[{index}]"
        if len(child):
            found = _unread(child, value, field) if value is not None else None
            if found is not None:
                return found
        elif value is None and (child.text or "").strip():
            return field, (child.text or "").strip()
    return None


def dotted_path(xpath: str) -> str | None:
    """``/erp:CreateSalesOrder/ITEMS/ITEM[2]/MATNR`` -> ``ITEMS.ITEM[1].MATNR`` (0-based, wrapper dropped)."""
    steps = [step for step in xpath.split("/") if step][1:]
    parts = []
    for step in steps:
        name, _, index = step.partition("[")
        name = name.rpartition(":")[2]
        parts.append(f"{name}[{int(index.rstrip(']')) - 1}]" if index else name)
    return ".".join(parts) or None


class Contract:
    def __init__(self, wsdl_path: Path = WSDL_PATH) -> None:
        self.wsdl_bytes = wsdl_path.read_bytes()
        self._document = parse_xml(self.wsdl_bytes)
        schema_element = self._document.find(f"{{{WSDL_NS}}}types/{{{XSD_NS}}}schema")
        if schema_element is None:
            raise ValueError(f"{wsdl_path} has no inline xsd:schema")
        self._schema_element = copy.deepcopy(schema_element)
        etree.XMLSchema(self._schema_element)  # a broken schema fails here, at start, not in a request
        # lxml keeps the last validation's errors on the schema object: one schema per server thread,
        # so that validations run side by side (lxml lets go of the GIL while it validates) with no lock
        self._schemas = threading.local()
        logging.getLogger("zeep.xsd.types.simple").addFilter(_DROP_CONVERSION_ERRORS)  # added once
        settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        self._zeep: Any = _zeep_client(str(wsdl_path), settings=settings)
        self.operations: tuple[str, ...] = tuple(
            str(op.get("name")) for op in self._document.iterfind(f"{{{WSDL_NS}}}portType/{{{WSDL_NS}}}operation")
        )
        # document/literal wrapped: the request element is named after the operation
        self._requests = {name: self._zeep.get_element(f"{{{NAMESPACE}}}{name}") for name in self.operations}
        self._responses = {name: self._zeep.get_element(f"{{{NAMESPACE}}}{name}Response") for name in self.operations}
        self._fault = self._zeep.get_element(f"{{{NAMESPACE}}}ErpFault")
        self._wsdl_by_address: dict[str, bytes] = {}

    def operation_of(self, element: etree._Element) -> str | None:
        """The operation whose request ``element`` is, if any."""
        qname = etree.QName(element)
        if qname.namespace == NAMESPACE and qname.localname in self._requests:
            return qname.localname
        return None

    def violations(self, element: etree._Element) -> list[SchemaViolation]:
        """What is wrong with ``element`` (an operation's request) according to the WSDL's schema.

        ``element`` is validated where it is, as if it were a document's root (lxml lends its
        children to a stand-in root for the time of the validation): no copy of the request.
        """
        schema = self._thread_schema()
        if schema.validate(element):
            return []
        errors = list(cast(Iterable[Any], schema.error_log))
        return [SchemaViolation(error.message, dotted_path(error.path or "")) for error in errors]

    def _thread_schema(self) -> etree.XMLSchema:
        schema: etree.XMLSchema | None = getattr(self._schemas, "schema", None)
        if schema is None:
            schema = self._schemas.schema = etree.XMLSchema(self._schema_element)
        return schema

    def parse_request(self, operation: str, element: etree._Element) -> Record:
        """``element`` (schema-valid) as a dict; ``UnreadableValue`` for a value zeep cannot convert."""
        value = self._requests[operation].parse(element, self._zeep.wsdl.types)
        parsed = _serialize(value, target_cls=dict)
        record = dict(parsed) if parsed else {}
        unread = _unread(element, record)
        if unread is not None:
            raise UnreadableValue(*unread)
        return record

    def render_response(self, operation: str, values: Record) -> etree._Element:
        return self._render(self._responses[operation], values)

    def render_fault_detail(self, values: Record) -> etree._Element:
        return self._render(self._fault, values)

    @staticmethod
    def _render(element: Any, values: Record) -> etree._Element:
        holder = etree.Element("holder")
        element.render(holder, element(**values))
        return holder[0]

    def wsdl_for(self, address: str) -> bytes:
        """The WSDL with every soap:address pointing at ``address``."""
        cached = self._wsdl_by_address.get(address)
        if cached is None:
            document = copy.deepcopy(self._document)
            for node in document.iter(f"{{{WSDL_SOAP_NS}}}address"):
                node.set("location", address)
            cached = etree.tostring(document, xml_declaration=True, encoding="UTF-8")
            self._wsdl_by_address[address] = cached
        return cached


__all__ = ["Contract", "SchemaViolation", "UnreadableValue", "dotted_path"]
