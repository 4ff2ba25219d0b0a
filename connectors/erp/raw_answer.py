"""A SOAP answer read by hand, for when zeep cannot convert a value in it.

zeep converts an answer whole: one ``xsd:decimal`` it cannot read (``1,250.00``, ``abc``) raises
``decimal.InvalidOperation`` out of the whole call, although the rest of the answer is fine. Two
uses: name the element and the value zeep choked on (``unconvertible_element``), and read the
answer as plain text (``answer_text``) where the caller judges each value itself (an accepted sales
order; a page of materials whose bad record is kept aside).

The answer is at most ``max_answer_bytes`` (the transport stopped reading there) and is parsed
with the same hardening as zeep's: no DTD, no entities, no network, no huge trees.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from lxml import etree

_SOAP11_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
_SOAP12_BODY = "{http://www.w3.org/2003/05/soap-envelope}Body"
_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
#: frames of a traceback looked at for zeep's element (zeep nests a few dozen calls deep)
_MAX_FRAMES = 400

Text = dict[str, Any]


class AnswerNotReadable(ValueError):
    """The answer is not a SOAP envelope with a response element in its Body (``reason`` says why)."""


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _text_of(element: etree._Element) -> Any:
    """An element as text: a leaf's text (None when empty), else a dict by local name, a list for repeats."""
    children = [child for child in element if isinstance(child.tag, str)]
    if not children:
        return element.text
    value: dict[str, Any] = {}
    for child in children:
        name, text = _local(child), _text_of(child)
        if name not in value:
            value[name] = text
        elif isinstance(value[name], _Repeated):
            value[name].append(text)
        else:
            value[name] = _Repeated([value[name], text])
    return {name: list(text) if isinstance(text, _Repeated) else text for name, text in value.items()}


class _Repeated(list[Any]):
    """Values of an element that occurs more than once (a plain list after reading)."""


def answer_text(content: bytes) -> Text:
    """The response element (first child of the Body) as text: ``{"SALES_ORDER": {"NETWR": "1,250.00", ...}}``.

    A leaf is its text (``None`` when empty), an element with children a dict by local name, an
    element that occurs more than once a list. Raises ``AnswerNotReadable``.
    """
    try:
        root = etree.fromstring(content, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise AnswerNotReadable(f"not XML: {exc.msg[:200]}") from None
    body = root.find(_SOAP11_BODY)
    if body is None:
        body = root.find(_SOAP12_BODY)
    response = None if body is None else next((c for c in body if isinstance(c.tag, str)), None)
    if response is None:
        raise AnswerNotReadable(f"no response element in a SOAP Body (root <{_local(root)}>)")
    value = _text_of(response)
    return value if isinstance(value, dict) else {}


def check_well_formed(content: bytes | None) -> None:
    """Raise ``etree.XMLSyntaxError`` unless ``content`` (an answer's bytes; None: nothing read) is
    well-formed XML, parsed with the hardened options and no recovery.

    zeep's lenient mode (``strict=False``, used where an accepted order must not be refused for a
    missing element) also turns on lxml's *recover*, which repairs an answer cut short into an
    empty response: that must stay an unreadable answer, never an accepted order.
    """
    if content is not None:
        etree.fromstring(content, etree.XMLParser(recover=False, **_PARSER_OPTIONS))


def fault_code_scope(content: bytes | None) -> dict[str | None, str] | None:
    """The namespaces in scope at the answer's fault code element (SOAP 1.1 ``faultcode``, 1.2
    ``Code/Value``), to resolve the code's QName prefix; None when the answer holds no fault code."""
    if not content:
        return None
    try:
        root = etree.fromstring(content, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError:
        return None
    for body_tag in (_SOAP11_BODY, _SOAP12_BODY):
        namespace = body_tag[1 : body_tag.index("}")]
        fault = root.find(f"{body_tag}/{{{namespace}}}Fault")
        if fault is None:
            continue
        code = fault.find("faultcode")  # SOAP 1.1: unqualified
        if code is None:
            code = fault.find(f"{{{namespace}}}Code/{{{namespace}}}Value")
        return None if code is None else dict(code.nsmap)
    return None


def element_path(element: etree._Element) -> str:
    """``SALES_ORDER.ITEMS.ITEM[0].NETWR``: the element's path below the response element (local names)."""
    parts: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        parent = node.getparent()
        if parent is None or _local(parent) == "Body":
            break  # ``node`` is the response element (or the root): not part of the path
        name = _local(node)
        same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
        parts.append(f"{name}[{same.index(node)}]" if len(same) > 1 else name)
        node = parent
    return ".".join(reversed(parts)) or _local(element)


def unconvertible_element(tb: TracebackType | None) -> tuple[str, str | None] | None:
    """(path, text) of the answer element zeep was converting when it raised, from the traceback.

    zeep's simple types convert in ``parse_xmlelement(self, xmlelement, ...)``; the innermost
    frame holding such an ``xmlelement`` is the one that failed. None when no frame does.
    """
    found: etree._Element | None = None
    for _ in range(_MAX_FRAMES):
        if tb is None:
            break
        candidate = tb.tb_frame.f_locals.get("xmlelement")
        if isinstance(candidate, etree._Element):
            found = candidate
        tb = tb.tb_next
    if found is None:
        return None
    return element_path(found), found.text


__all__ = [
    "AnswerNotReadable",
    "answer_text",
    "check_well_formed",
    "element_path",
    "fault_code_scope",
    "unconvertible_element",
]
