"""Hardened XML parsing for everything the ERP reads: no DTD, no entities, no network, no huge trees."""

from __future__ import annotations

from lxml import etree

#: the largest request body the ERP reads
MAX_BODY_BYTES = 2 * 1024 * 1024


class UnsafeXml(ValueError):
    """The document is not XML, or uses what the ERP refuses (a DTD, entities)."""


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


def parse_xml(data: bytes) -> etree._Element:
    """The root element of ``data``; raises ``UnsafeXml`` for non-XML and for any DTD."""
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


__all__ = ["MAX_BODY_BYTES", "UnsafeXml", "parse_xml"]
