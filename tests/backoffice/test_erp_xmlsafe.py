"""The pre-scan of a request's bytes (``backoffice.erp.xmlsafe.scan``): it must see what the parser sees."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from backoffice.erp.limits import RequestLimits
from backoffice.erp.xmlsafe import TooComplex, UnsafeXml, parse_xml, scan

WIDE = RequestLimits(max_elements=10_000, max_depth=100, max_attributes=100)


def limits(**changes: int) -> RequestLimits:
    values = {"max_elements": 10_000, "max_depth": 100, "max_attributes": 100} | changes
    return RequestLimits(**values)


def refused_by(data: bytes, **changes: int) -> str | None:
    """The name of the limit the scan stops at, None when it passes."""
    try:
        scan(data, limits(**changes))
    except TooComplex as exc:
        return exc.limit
    return None


TRICKY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<a xmlns="urn:x" x="1 > 0" y=\'say "<"\'>'  # '>' inside values; '<' is not allowed there, '&lt;' is
    b"<!-- <b><b><b><b> --><![CDATA[<c/><c/><c/><c>]]><?pi <d/><d/> ?>"
    b"text &gt; &amp; more > still text<e\n  z = '2'\n/></a>\n<!-- after -->"
).replace(b'say "<"', b"say &quot;&lt;&quot;")


def test_markup_inside_comments_cdata_pis_and_attribute_values_is_not_counted() -> None:
    parse_xml(TRICKY)  # well-formed
    assert refused_by(TRICKY, max_elements=2, max_depth=2, max_attributes=3) is None
    assert refused_by(TRICKY, max_elements=1) == "max_elements"
    assert refused_by(TRICKY, max_depth=1) == "max_depth"
    assert refused_by(TRICKY, max_attributes=2) == "max_attributes"  # xmlns counts
    assert refused_by(TRICKY, max_total_attributes=4) is None  # xmlns, x, y on a; z on e
    assert refused_by(TRICKY, max_total_attributes=3) == "max_total_attributes"


def test_a_limit_is_a_maximum_that_is_allowed() -> None:
    doc = b"<a><b><c/></b><b/></a>"
    assert refused_by(doc, max_elements=4, max_depth=3) is None
    assert refused_by(doc, max_elements=3) == "max_elements"
    assert refused_by(doc, max_depth=2) == "max_depth"
    assert refused_by(b'<a p="1" q="2"/>', max_attributes=2) is None
    assert refused_by(b'<a p="1" q="2" r="3"/>', max_attributes=2) == "max_attributes"


def test_the_scan_stops_at_the_first_limit_without_reading_on() -> None:
    huge = b"<a>" + b"<b/>" * 500_000 + b"</a>"
    with pytest.raises(TooComplex, match="more than 10 elements"):
        scan(huge, limits(max_elements=10))
    many = b"<a " + b" ".join(b'x%d="1"' % i for i in range(200_000)) + b"/>"
    with pytest.raises(TooComplex, match="more than 32 attributes"):
        scan(many, limits(max_attributes=32))


@pytest.mark.parametrize(
    ("data", "mentions"),
    [
        (b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "DTD"),
        ("<a>ü</a>".encode("utf-16"), "UTF-8"),
        ("<a>ü</a>".encode("utf-32"), "UTF-8"),
        (b'<?xml version="1.0" encoding="ISO-2022-JP"?><a/>', "ISO-2022-JP".lower()),
        (b'<?xml version="1.0" encoding="cp037"?><a/>', "cp037"),
        (b"\x4c\x6f\xa7\x94\x93", "starts with '<'"),  # '<?xml' in EBCDIC
        (b"", "starts with '<'"),
        (b"plain text", "starts with '<'"),
    ],
    ids=["doctype", "utf-16", "utf-32", "iso-2022-jp", "ebcdic-declared", "ebcdic", "empty", "text"],
)
def test_what_the_scan_cannot_read_safely_is_refused_unparsed(data: bytes, mentions: str) -> None:
    with pytest.raises(UnsafeXml, match=mentions) as caught:
        scan(data, WIDE)
    assert not isinstance(caught.value, TooComplex)


@pytest.mark.parametrize(
    "data",
    [b'\xef\xbb\xbf<a x="1"/>', b'<?xml version="1.0" encoding="iso-8859-1"?><a>\xfc</a>', b"\n  <a/>\n"],
    ids=["utf-8-bom", "latin-1", "leading-space"],
)
def test_readable_encodings_pass(data: bytes) -> None:
    scan(data, limits(max_elements=1, max_depth=1, max_attributes=1))
    parse_xml(data, limits(max_elements=1, max_depth=1, max_attributes=1))


@pytest.mark.parametrize("data", [b"<a x=1/>", b"<a></b>", b"</a><a/>", b"<a><b", b"<a>&undefined;</a>", b"<a/><b/>"])
def test_malformed_documents_are_left_to_the_parser(data: bytes) -> None:
    scan(data, WIDE)  # no opinion: it stops where it cannot read on
    with pytest.raises(UnsafeXml, match="not well-formed"):
        parse_xml(data, WIDE)


# -- the scan against the parser, on generated documents --------------------------------------------------

_names = st.sampled_from(["a", "ITEM", "erp:x", "b-c.d", "ü"])
_texts = st.text(alphabet=st.sampled_from(list("x <>&\"' \n]]>-?")), max_size=12)


@st.composite
def _trees(draw: st.DrawFn, depth: int = 0) -> etree._Element:
    name = draw(_names)
    ns = "urn:e" if name.startswith("erp:") else None
    element = etree.Element(f"{{{ns}}}{name[4:]}" if ns else name, nsmap={"erp": ns} if ns and depth == 0 else None)
    for i in range(draw(st.integers(0, 3))):
        element.set(f"at{i}", draw(_texts))
    element.text = draw(_texts)
    if depth < 5:
        for _ in range(draw(st.integers(0, 3))):
            child = draw(_trees(depth + 1))
            child.tail = draw(_texts)
            element.append(child)
    if draw(st.booleans()):
        element.append(etree.Comment(draw(st.sampled_from(["<a><a>", " x > y ", "<![CDATA[ <b> ]]>"]))))
    if draw(st.booleans()):
        element.insert(0, etree.ProcessingInstruction("pi", "<c/> ?"))
    return element


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees(), cdata=st.booleans())
def test_the_scan_counts_what_the_parser_builds(tree: etree._Element, cdata: bool) -> None:
    if cdata:
        tree.append(etree.Element("cd"))
        tree[-1].text = etree.CDATA("<z><z/></z> ]] >")
    data = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    parsed = etree.fromstring(data)
    nodes = [node for node in parsed.iter() if isinstance(node.tag, str)]
    elements = len(nodes)
    depth = max(len(list(node.iterancestors())) + 1 for node in nodes)

    def declared_here(node: etree._Element) -> int:
        parent = node.getparent()
        inherited = set(parent.nsmap.items()) if parent is not None else set()
        return len(set(node.nsmap.items()) - inherited)

    attributes = max(len(node.attrib) + declared_here(node) for node in nodes)
    total = sum(len(node.attrib) + declared_here(node) for node in nodes)
    scan(
        data,
        limits(
            max_elements=elements,
            max_depth=depth,
            max_attributes=max(attributes, 1),
            max_total_attributes=max(total, 1),
        ),
    )
    if elements > 1:
        assert refused_by(data, max_elements=elements - 1) == "max_elements"
    if depth > 1:
        assert refused_by(data, max_depth=depth - 1) == "max_depth"
    if attributes > 1:
        assert refused_by(data, max_attributes=attributes - 1) == "max_attributes"
    if total > 1:
        assert refused_by(data, max_total_attributes=total - 1) == "max_total_attributes"
