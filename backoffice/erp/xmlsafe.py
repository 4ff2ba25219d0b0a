"""Hardened XML parsing for everything the ERP reads: no DTD, no entities, no network, no huge trees.

A request is first scanned as raw bytes (``scan``): elements, depth, attributes per element and
attributes in the document are counted and the scan stops at the first limit, before lxml builds
anything. A tree costs about 25-60 times the bytes that declare it (a 2 MB body of empty elements
or attributes took 50-340 MB), a scan costs nothing but time (about 1 ms per 1,000 elements).
"""

from __future__ import annotations

import re
from functools import lru_cache

from lxml import etree

from backoffice.erp.limits import RequestLimits


class UnsafeXml(ValueError):
    """The document is not XML, or uses what the ERP refuses (a DTD, entities, an encoding other than UTF-8)."""


class TooComplex(UnsafeXml):
    """The document passes one of the ``RequestLimits``: ``limit`` is its name, ``bound`` its value."""

    def __init__(self, limit: str, bound: int, what: str) -> None:
        super().__init__(f"the request has {what} (limit {limit} = {bound})")
        self.limit = limit
        self.bound = bound


# -- the pre-scan -----------------------------------------------------------------------------
# A tokenizer for the bytes of an XML document in an ASCII-compatible encoding. Its grammar accepts
# every well-formed document (and more: the parser refuses the rest), so up to the first byte it cannot
# read it sees the same elements as the parser; where it stops reading, the parser stops too, with its
# own error, having built only what was counted.
_S = rb"[ \t\r\n]"
_NAME = rb"[^ \t\r\n<>/=\"'!?][^ \t\r\n<>/=\"']*"
_ATTRIBUTE = re.compile(_S + rb"+[^ \t\r\n<>/=\"']+" + _S + rb"*=" + _S + rb"*(?:\"[^<\"]*\"|'[^<']*')")
_TOKEN = re.compile(
    rb"[^<]*<(?:"  # text, then a markup start
    rb"(?P<end>/)" + _NAME + _S + rb"*>"
    rb"|(?P<comment>!--.*?-->)"
    rb"|(?P<cdata>!\[CDATA\[.*?\]\]>)"
    rb"|(?P<pi>\?.*?\?>)"
    rb"|(?P<doctype>!DOCTYPE)"
    rb"|(?P<start>" + _NAME + rb"))",
    re.DOTALL,
)
_START = re.compile(rb"(?:\xef\xbb\xbf)?" + _S + rb"*<")
_DECLARED_ENCODING = re.compile(
    rb"(?:\xef\xbb\xbf)?<\?xml" + _S + rb"[^>]*?encoding" + _S + rb"*=" + _S + rb"*[\"']([^\"'>]*)"
)
# Encodings in which the structural bytes (< > / = " ' and white space) mean what they mean in ASCII
# everywhere: the scan reads those. (Not ISO-2022-JP and the like, whose escaped runs contain them.)
_READABLE_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1"})


@lru_cache(maxsize=8)
def _start_tag_rest(max_attributes: int) -> re.Pattern[bytes]:
    # up to max_attributes attributes, then the tag's end; ``close`` is missing when it does not end there
    repeat = b"{0,%d}" % max_attributes
    return re.compile(rb"(?P<attributes>(?:" + _ATTRIBUTE.pattern + rb")" + repeat + rb")" + _S + rb"*(?P<close>/?>)?")


def _check_encoding(data: bytes) -> None:
    if b"\x00" in data:
        raise UnsafeXml("not readable: the ERP reads UTF-8 (UTF-16 and UTF-32 are not accepted)")
    if _START.match(data) is None:
        raise UnsafeXml("not well-formed XML: a document starts with '<' (in UTF-8)")
    declared = _DECLARED_ENCODING.match(data)
    if declared is not None:
        name = declared.group(1).decode("ascii", "replace").lower()
        if name not in _READABLE_ENCODINGS:
            raise UnsafeXml(f"encoding {name[:40]!r} is not accepted: send UTF-8")


def scan(data: bytes, limits: RequestLimits) -> None:
    """Checks ``data``'s shape against ``limits`` without building anything.

    Raises ``TooComplex`` at the first element past ``max_elements``, the first one deeper than
    ``max_depth`` or with more than ``max_attributes`` attributes, or at the one whose attributes
    take the document past ``max_total_attributes`` (namespace declarations count in both);
    ``UnsafeXml`` for a DOCTYPE or an encoding the scan cannot read. Returns quietly at the end of
    the document or at the first byte it cannot read as XML (the parser then says what is wrong).
    """
    _check_encoding(data)
    rest_of_start_tag = _start_tag_rest(limits.max_attributes).match
    next_token = _TOKEN.match
    elements = depth = position = attributes = 0
    while (token := next_token(data, position)) is not None:
        position = token.end()
        kind = token.lastgroup
        if kind == "end":
            if depth == 0:
                return  # an end tag with no start: the parser refuses it
            depth -= 1
        elif kind == "doctype":
            raise UnsafeXml("a DTD (<!DOCTYPE ...>) is not allowed")
        elif kind == "start":
            elements += 1
            if elements > limits.max_elements:
                raise TooComplex("max_elements", limits.max_elements, f"more than {limits.max_elements} elements")
            if depth + 1 > limits.max_depth:
                raise TooComplex("max_depth", limits.max_depth, f"elements nested deeper than {limits.max_depth}")
            tag = rest_of_start_tag(data, position)
            assert tag is not None  # everything in it is optional
            close = tag.group("close")
            if close is None:
                if _ATTRIBUTE.match(data, tag.end("attributes")):
                    raise TooComplex(
                        "max_attributes",
                        limits.max_attributes,
                        f"an element with more than {limits.max_attributes} attributes",
                    )
                return  # a start tag the parser will refuse
            start, end = tag.span("attributes")
            if start < end:  # each attribute the tag's pattern matched, counted again (it has no counter)
                attributes += len(_ATTRIBUTE.findall(data, start, end))
                if attributes > limits.max_total_attributes:
                    raise TooComplex(
                        "max_total_attributes",
                        limits.max_total_attributes,
                        f"more than {limits.max_total_attributes} attributes in all",
                    )
            position = tag.end()
            if close == b">":
                depth += 1


# -- the parser -------------------------------------------------------------------------------


class _RefuseAll(etree.Resolver):
    """Refuses every external resource (DTD, entity), local files included: no_network covers only URLs."""

    def resolve(self, system_url: str, public_id: str, context: object = None) -> None:
        raise UnsafeXml(f"external resource {system_url!r} refused")


def _parser() -> etree.XMLParser:
    # A new parser per document: lxml parsers must not be used by two threads at once.
    # (Not collect_ids=False: with it, lxml 6 reads a DOCTYPE's external subset from disk.)
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    parser.resolvers.add(_RefuseAll())
    return parser


def parse_xml(data: bytes, limits: RequestLimits | None = None) -> etree._Element:
    """The root element of ``data``; raises ``UnsafeXml`` for non-XML and for any DTD.

    With ``limits`` (a request from outside), ``data`` is scanned first: ``TooComplex`` (an
    ``UnsafeXml``) before anything is built when it passes one of them.
    """
    if limits is not None:
        scan(data, limits)
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXml(f"not well-formed XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.system_url:
        raise UnsafeXml("a DTD (<!DOCTYPE ...>) is not allowed")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise UnsafeXml("entity references are not allowed")
    return root


__all__ = ["TooComplex", "UnsafeXml", "parse_xml", "scan"]
