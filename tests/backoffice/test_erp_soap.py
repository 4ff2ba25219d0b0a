"""The reference ERP over real HTTP, spoken to by hand: plain ``requests`` and hand-written envelopes.

No zeep here on purpose: these tests pin the wire format of the frozen contract
(docs/erp-service.md), independently of the connector that normally talks to it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from lxml import etree

from backoffice.erp import WSDL_PATH
from backoffice.erp.process import ErpServerProcess

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:crm-esb:erp:v1"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
_keys = itertools.count()


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}-{next(_keys)}"


def envelope(body: str) -> bytes:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:erp="{NS}">'
        f"<soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def post(session: requests.Session, erp: ErpServerProcess, body: str) -> requests.Response:
    return session.post(erp.url, data=envelope(body), headers=HEADERS, timeout=10)


def answer(response: requests.Response) -> etree._Element:
    """The Body's one element of a successful response."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    body = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    return body[0]


def fault(response: requests.Response) -> dict[str, str | None]:
    """faultcode, faultstring and the ErpFault detail's CODE/TEXT/FIELD/VALUE of a fault response."""
    assert response.status_code == 500, response.text
    node = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert node is not None, response.text
    result: dict[str, str | None] = {
        "faultcode": node.findtext("faultcode"),
        "faultstring": node.findtext("faultstring"),
    }
    detail = node.find(f"detail/{{{NS}}}ErpFault")
    assert detail is not None, response.text
    for name in ("CODE", "TEXT", "FIELD", "VALUE"):
        result[name] = detail.findtext(name)
    return result


def customer_xml(extref: str, *, land1: str = "DEU", klimk: str = "10000.00", name: str = "Müller GmbH") -> str:
    return (
        f"<CUSTOMER><EXTREF>{extref}</EXTREF><NAME1>{name}</NAME1><STRAS>Hauptstr. 5</STRAS>"
        f"<ORT01>Berlin</ORT01><PSTLZ>10115</PSTLZ><LAND1>{land1}</LAND1><KLIMK>{klimk}</KLIMK></CUSTOMER>"
    )


def create_customer(session: requests.Session, erp: ErpServerProcess, **kwargs: str) -> str:
    result = answer(
        post(session, erp, f"<erp:CreateCustomer>{customer_xml(unique('crm'), **kwargs)}</erp:CreateCustomer>")
    )
    return str(result.findtext("KUNNR"))


def order_xml(key: str, kunnr: str, *items: tuple[str, str]) -> str:
    lines = "".join(f"<ITEM><MATNR>{m}</MATNR><KWMENGE>{q}</KWMENGE></ITEM>" for m, q in items)
    return (
        f"<erp:CreateSalesOrder><IDEMPOTENCY_KEY>{key}</IDEMPOTENCY_KEY>"
        f"<HEADER><KUNNR>{kunnr}</KUNNR><AUART>TA</AUART><WAERS>EUR</WAERS><BSTKD>PO-1</BSTKD>"
        f"<AUDAT>2025-03-01</AUDAT></HEADER><ITEMS>{lines}</ITEMS></erp:CreateSalesOrder>"
    )


def changed_since(
    session: requests.Session, erp: ErpServerProcess, what: str, since: int, max_rows: int
) -> etree._Element:
    operation = f"Get{what}ChangedSince"
    body = f"<erp:{operation}><SINCE_SEQ>{since}</SINCE_SEQ><MAX_ROWS>{max_rows}</MAX_ROWS></erp:{operation}>"
    return answer(post(session, erp, body))


# -- answers --------------------------------------------------------------------------------


def test_create_customer_then_get_it_back(erp: ErpServerProcess, session: requests.Session) -> None:
    extref = unique("crm")
    created = answer(post(session, erp, f"<erp:CreateCustomer>{customer_xml(extref)}</erp:CreateCustomer>"))
    assert created.tag == f"{{{NS}}}CreateCustomerResponse"
    kunnr = created.findtext("KUNNR")
    assert kunnr is not None and len(kunnr) == 10 and kunnr.isdigit()
    assert created.findtext("CREATED") == "true"

    got = answer(post(session, erp, f"<erp:GetCustomer><KUNNR>{kunnr}</KUNNR></erp:GetCustomer>"))
    customer = got.find("CUSTOMER")
    assert customer is not None
    assert customer.findtext("KUNNR") == kunnr
    assert customer.findtext("EXTREF") == extref
    assert customer.findtext("NAME1") == "Müller GmbH"
    assert customer.findtext("LAND1") == "DEU"
    assert Decimal(customer.findtext("KLIMK") or "") == Decimal("10000.00")
    assert customer.findtext("WAERS") == "EUR"  # defaults the ERP fills in
    assert customer.findtext("ZTERM") == "NT30"
    assert int(customer.findtext("CHSEQ") or 0) > 0


def test_create_customer_is_idempotent_on_extref(erp: ErpServerProcess, session: requests.Session) -> None:
    extref = unique("crm")
    first = answer(post(session, erp, f"<erp:CreateCustomer>{customer_xml(extref)}</erp:CreateCustomer>"))
    again = answer(post(session, erp, f"<erp:CreateCustomer>{customer_xml(extref, name='Other')}</erp:CreateCustomer>"))
    assert again.findtext("KUNNR") == first.findtext("KUNNR")
    assert (first.findtext("CREATED"), again.findtext("CREATED")) == ("true", "false")
    got = answer(post(session, erp, f"<erp:GetCustomer><KUNNR>{first.findtext('KUNNR')}</KUNNR></erp:GetCustomer>"))
    assert got.findtext("CUSTOMER/NAME1") == "Müller GmbH", "a replay must not change the customer"


def test_seed_materials_have_the_fixed_numbers(erp: ErpServerProcess, session: requests.Session) -> None:
    result = answer(post(session, erp, "<erp:ListMaterials/>"))
    materials = {m.findtext("MATNR"): m for m in result.iterfind("MATERIALS/MATERIAL")}
    expected = {
        "MAT-1001": ("Industrial pump P200", "ST", "1250.00"),
        "MAT-1002": ("Pressure valve V15", "ST", "89.50"),
        "MAT-1003": ("Hydraulic oil HLP46", "L", "4.20"),
        "MAT-1004": ("Steel pipe 2in", "M", "12.80"),
        "MAT-1005": ("Sealing kit", "PAK", "24.90"),
        "MAT-1006": ("Copper wire", "KG", "9.75"),
    }
    for matnr, (maktx, meins, netpr) in expected.items():
        m = materials[matnr]
        assert (m.findtext("MAKTX"), m.findtext("MEINS"), m.findtext("NETPR"), m.findtext("WAERS")) == (
            maktx,
            meins,
            netpr,
            "EUR",
        )


# -- requests the schema refuses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "field", "mentions"),
    [
        ("<CUSTOMER><EXTREF>x</EXTREF><LAND1>DEU</LAND1></CUSTOMER>", "CUSTOMER.LAND1", "NAME1"),  # required missing
        ("<CUSTOMER><NAME1>A</NAME1><LAND1>DEU</LAND1><KLIMK>lots</KLIMK></CUSTOMER>", "CUSTOMER.KLIMK", "KLIMK"),
        ("<CUSTOMER><NAME1>A</NAME1><LAND1>DEU</LAND1><KLIMK>1.005</KLIMK></CUSTOMER>", "CUSTOMER.KLIMK", "fraction"),
        ("<CUSTOMER><NAME1>A</NAME1><LAND1>DEUTS</LAND1></CUSTOMER>", "CUSTOMER.LAND1", "length"),
        ("<CUSTOMER><NAME1>A</NAME1><LAND1>DEU</LAND1><FOO>1</FOO></CUSTOMER>", "CUSTOMER.FOO", "FOO"),
        ("<CUSTOMER><NAME1>A</NAME1><LAND1>DEU</LAND1><WAERS>eur</WAERS></CUSTOMER>", "CUSTOMER.WAERS", "pattern"),
    ],
    ids=["missing-required", "wrong-type", "too-many-decimals", "too-long", "unknown-element", "bad-pattern"],
)
def test_schema_invalid_request_gets_a_client_fault(
    erp: ErpServerProcess, session: requests.Session, customer: str, field: str, mentions: str
) -> None:
    before = erp.calls("CreateCustomer")
    f = fault(post(session, erp, f"<erp:CreateCustomer>{customer}</erp:CreateCustomer>"))
    assert f["faultcode"] == "soap:Client"
    assert f["CODE"] == "SCHEMA_INVALID"
    assert f["FIELD"] == field
    assert mentions in (f["faultstring"] or "")
    assert erp.calls("CreateCustomer") == before + 1  # counted under its operation, once


def test_schema_invalid_item_names_its_position(erp: ErpServerProcess, session: requests.Session) -> None:
    kunnr = create_customer(session, erp)
    f = fault(post(session, erp, order_xml(unique("so"), kunnr, ("MAT-1001", "1"), ("MAT-1002", "-2"))))
    assert (f["CODE"], f["FIELD"]) == ("SCHEMA_INVALID", "ITEMS.ITEM[1].KWMENGE")


def test_a_refused_request_changes_nothing(erp: ErpServerProcess, session: requests.Session) -> None:
    extref = unique("crm")
    bad = f"<CUSTOMER><EXTREF>{extref}</EXTREF><NAME1>A</NAME1><LAND1>DEU</LAND1><KLIMK>x</KLIMK></CUSTOMER>"
    assert fault(post(session, erp, f"<erp:CreateCustomer>{bad}</erp:CreateCustomer>"))["CODE"] == "SCHEMA_INVALID"
    good = answer(post(session, erp, f"<erp:CreateCustomer>{customer_xml(extref)}</erp:CreateCustomer>"))
    assert good.findtext("CREATED") == "true"


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"this is not XML", "XML"),
        (b"<order><id>1</id></order>", "not a SOAP 1.1 envelope"),
        (envelope("<erp:DeleteEverything/>"), "not a request of this service"),
        (envelope("<erp:GetCustomer><KUNNR>1</KUNNR></erp:GetCustomer><erp:ListMaterials/>"), "exactly one"),
        (b"", "XML"),
    ],
    ids=["not-xml", "not-an-envelope", "unknown-operation", "two-operations", "empty"],
)
def test_what_is_not_a_request_gets_a_client_fault(
    erp: ErpServerProcess, session: requests.Session, body: bytes, mentions: str
) -> None:
    f = fault(session.post(erp.url, data=body, headers=HEADERS, timeout=10))
    assert f["faultcode"] == "soap:Client"
    assert f["CODE"] == "SCHEMA_INVALID"
    assert mentions in (f["faultstring"] or "")


def test_dtd_and_entities_are_refused(erp: ErpServerProcess, session: requests.Session, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    for doctype, use in [
        (f'<!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>', "&x;"),
        ('<!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>', "&b;"),
        (f'<!DOCTYPE e SYSTEM "file://{secret}">', "1"),
    ]:
        body = envelope(f"<erp:GetCustomer><KUNNR>{use}</KUNNR></erp:GetCustomer>").decode()
        response = session.post(erp.url, data=(doctype + body).encode(), headers=HEADERS, timeout=10)
        f = fault(response)
        assert (f["faultcode"], f["CODE"]) == ("soap:Client", "SCHEMA_INVALID")
        assert "DTD" in (f["faultstring"] or "")
        assert "TOP-SECRET" not in response.text


# -- business faults ------------------------------------------------------------------------------


def test_unknown_country(erp: ErpServerProcess, session: requests.Session) -> None:
    body = f"<erp:CreateCustomer>{customer_xml(unique('crm'), land1='XYZ')}</erp:CreateCustomer>"
    f = fault(post(session, erp, body))
    assert f["faultcode"] == "soap:Client"
    assert (f["CODE"], f["FIELD"], f["VALUE"]) == ("UNKNOWN_COUNTRY", "CUSTOMER.LAND1", "XYZ")


def test_unknown_material_names_the_second_item(erp: ErpServerProcess, session: requests.Session) -> None:
    kunnr = create_customer(session, erp)
    since = int(changed_since(session, erp, "SalesOrders", 0, 5000).findtext("LAST_SEQ") or 0)
    f = fault(post(session, erp, order_xml(unique("so"), kunnr, ("MAT-1001", "1"), ("MAT-9999", "1"))))
    assert f["faultcode"] == "soap:Client"
    assert (f["CODE"], f["FIELD"], f["VALUE"]) == ("UNKNOWN_MATERIAL", "ITEMS.ITEM[1].MATNR", "MAT-9999")
    assert changed_since(session, erp, "SalesOrders", since, 10).find("SALES_ORDERS/SALES_ORDER") is None


def test_unknown_customer_and_not_found(erp: ErpServerProcess, session: requests.Session) -> None:
    f = fault(post(session, erp, order_xml(unique("so"), "0099999999", ("MAT-1001", "1"))))
    assert (f["CODE"], f["FIELD"], f["VALUE"]) == ("UNKNOWN_CUSTOMER", "HEADER.KUNNR", "0099999999")
    f = fault(post(session, erp, "<erp:GetCustomer><KUNNR>0099999999</KUNNR></erp:GetCustomer>"))
    assert (f["CODE"], f["FIELD"]) == ("NOT_FOUND", "KUNNR")


def test_credit_block_names_both_amounts_and_the_currency(erp: ErpServerProcess, session: requests.Session) -> None:
    kunnr = create_customer(session, erp, klimk="2000.00")
    ok = answer(post(session, erp, order_xml(unique("so"), kunnr, ("MAT-1002", "10"))))  # 895.00
    assert ok.findtext("CREATED") == "true"
    f = fault(post(session, erp, order_xml(unique("so"), kunnr, ("MAT-1001", "1"))))  # 1250.00 > 1105.00 left
    assert f["faultcode"] == "soap:Client"
    assert f["CODE"] == "CREDIT_BLOCK"
    text = f["TEXT"] or ""
    assert "1250.00" in text and "1105.00" in text and "EUR" in text

    status = answer(post(session, erp, f"<erp:GetCreditStatus><KUNNR>{kunnr}</KUNNR></erp:GetCreditStatus>"))
    credit = status.find("CREDIT_STATUS")
    assert credit is not None
    values = {child.tag: child.text for child in credit}
    assert values["KLIMK"] == "2000.00"
    assert Decimal(values["SKFOR"] or "") == Decimal("895.00")  # the order was billed at once
    assert Decimal(values["OBLIG"] or "") == Decimal("895.00")
    assert Decimal(values["AVAIL"] or "") == Decimal("1105.00")
    assert values["CRBLK"] == "false"


# -- idempotency, change sequence -----------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_order(erp: ErpServerProcess, session: requests.Session) -> None:
    # the limit fits exactly one order: a replay must not be credit-checked as if it were new
    kunnr = create_customer(session, erp, klimk="1250.00")
    since = int(changed_since(session, erp, "SalesOrders", 0, 5000).findtext("LAST_SEQ") or 0)
    key = unique("crm-order")
    first = answer(post(session, erp, order_xml(key, kunnr, ("MAT-1001", "1"))))
    again = answer(post(session, erp, order_xml(key, kunnr, ("MAT-1001", "1"))))
    assert (first.findtext("CREATED"), again.findtext("CREATED")) == ("true", "false")
    vbeln = first.findtext("SALES_ORDER/VBELN")
    assert vbeln and again.findtext("SALES_ORDER/VBELN") == vbeln
    assert first.findtext("SALES_ORDER/NETWR") == "1250.00"
    assert [i.findtext("POSNR") for i in first.iterfind("SALES_ORDER/ITEMS/ITEM")] == ["10"]
    orders = changed_since(session, erp, "SalesOrders", since, 100).findall("SALES_ORDERS/SALES_ORDER")
    assert [o.findtext("VBELN") for o in orders] == [vbeln]


def test_a_refused_key_stays_refused_after_the_cause_is_gone(erp: ErpServerProcess, session: requests.Session) -> None:
    extref = unique("crm")
    created = answer(
        post(session, erp, f"<erp:CreateCustomer>{customer_xml(extref, klimk='1000.00')}</erp:CreateCustomer>")
    )
    kunnr = str(created.findtext("KUNNR"))
    key = unique("crm-order")
    first = fault(post(session, erp, order_xml(key, kunnr, ("MAT-1001", "1"))))  # 1250.00 > 1000.00
    assert first["CODE"] == "CREDIT_BLOCK"
    raised = customer_xml(extref, klimk="90000.00").replace("<CUSTOMER>", f"<CUSTOMER><KUNNR>{kunnr}</KUNNR>")
    answer(post(session, erp, f"<erp:UpdateCustomer>{raised}</erp:UpdateCustomer>"))
    since = int(changed_since(session, erp, "SalesOrders", 0, 5000).findtext("LAST_SEQ") or 0)
    replay = fault(post(session, erp, order_xml(key, kunnr, ("MAT-1001", "1"))))
    assert (replay["CODE"], replay["TEXT"]) == (first["CODE"], first["TEXT"]), "a replay gets the first answer"
    assert changed_since(session, erp, "SalesOrders", since, 100).findall("SALES_ORDERS/SALES_ORDER") == []
    fresh = answer(post(session, erp, order_xml(unique("crm-order"), kunnr, ("MAT-1001", "1"))))
    assert fresh.findtext("CREATED") == "true"  # a new key is judged on today's credit


def test_concurrent_replays_create_one_order(erp: ErpServerProcess) -> None:
    with requests.Session() as s:
        kunnr = create_customer(s, erp)
    key = unique("crm-order")

    def place(_: int) -> tuple[str | None, str | None]:
        with requests.Session() as own:
            result = answer(post(own, erp, order_xml(key, kunnr, ("MAT-1003", "5"))))
        return result.findtext("SALES_ORDER/VBELN"), result.findtext("CREATED")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(place, range(8)))
    assert len({vbeln for vbeln, _ in results}) == 1
    assert sorted(created or "" for _, created in results) == ["false"] * 7 + ["true"]


def test_changed_since_is_monotonic_and_pages_with_more(erp: ErpServerProcess, session: requests.Session) -> None:
    start = int(changed_since(session, erp, "Customers", 0, 5000).findtext("LAST_SEQ") or 0)
    kunnrs = [create_customer(session, erp) for _ in range(5)]

    seen: list[tuple[int, str]] = []
    since, pages = start, 0
    while True:
        page = changed_since(session, erp, "Customers", since, 2)
        rows = [(int(c.findtext("CHSEQ") or 0), c.findtext("KUNNR") or "") for c in page.iterfind("CUSTOMERS/CUSTOMER")]
        assert len(rows) <= 2
        if rows:
            assert int(page.findtext("LAST_SEQ") or 0) == rows[-1][0]
        seen += rows
        since, pages = int(page.findtext("LAST_SEQ") or 0), pages + 1
        if page.findtext("MORE") == "false":
            break
        assert rows, "MORE=true with an empty page"
    assert [k for _, k in seen] == kunnrs
    assert [s for s, _ in seen] == sorted({s for s, _ in seen}) and seen[0][0] > start
    assert pages == 3

    end = changed_since(session, erp, "Customers", since, 2)
    assert (end.find("CUSTOMERS/CUSTOMER"), end.findtext("LAST_SEQ"), end.findtext("MORE")) == (
        None,
        str(since),
        "false",
    )

    # a change moves the customer behind everything read so far
    update = f"<CUSTOMER><KUNNR>{kunnrs[0]}</KUNNR><NAME1>Renamed</NAME1><LAND1>AUT</LAND1></CUSTOMER>"
    answer(post(session, erp, f"<erp:UpdateCustomer>{update}</erp:UpdateCustomer>"))
    after = changed_since(session, erp, "Customers", since, 10)
    changed = after.findall("CUSTOMERS/CUSTOMER")
    assert [(c.findtext("KUNNR"), c.findtext("NAME1"), c.findtext("LAND1")) for c in changed] == [
        (kunnrs[0], "Renamed", "AUT")
    ]
    assert int(changed[0].findtext("CHSEQ") or 0) > since


# -- WSDL, auth, misbehaviour -----------------------------------------------------------------


def test_wsdl_is_served_with_the_real_address(erp: ErpServerProcess, session: requests.Session) -> None:
    response = session.get(erp.wsdl_url, timeout=10)
    assert response.status_code == 200
    served = etree.fromstring(response.content)
    address = served.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None and address.get("location") == erp.url
    original = etree.parse(str(WSDL_PATH)).getroot()
    assert served.get("targetNamespace") == original.get("targetNamespace") == NS
    ops = "{http://schemas.xmlsoap.org/wsdl/}portType/{http://schemas.xmlsoap.org/wsdl/}operation"
    assert [o.get("name") for o in served.iterfind(ops)] == [o.get("name") for o in original.iterfind(ops)]


def test_injected_server_faults_and_outage(erp: ErpServerProcess, session: requests.Session) -> None:
    try:
        erp.set_faults(fault_rate=1.0)
        f = fault(post(session, erp, "<erp:ListMaterials/>"))
        assert (f["faultcode"], f["CODE"]) == ("soap:Server", "INJECTED_FAULT")
        erp.set_faults(fault_rate=0.0, outage=True)
        assert post(session, erp, "<erp:ListMaterials/>").status_code == 503
        assert session.get(erp.base_url + "/health", timeout=5).status_code == 200
    finally:
        erp.set_faults(fault_rate=0.0, outage=False, latency_ms=0)
    answer(post(session, erp, "<erp:ListMaterials/>"))
    bad = session.post(erp.base_url + "/admin/faults", json={"fault_rate": 2}, timeout=5)
    assert bad.status_code == 400


def test_basic_auth_is_enforced_when_configured(tmp_path: Path) -> None:
    with ErpServerProcess(tmp_path / "erp.db", user="esb", password="s3cret") as erp, requests.Session() as s:
        assert s.get(erp.wsdl_url, timeout=5).status_code == 401
        assert s.post(erp.url, data=envelope("<erp:ListMaterials/>"), headers=HEADERS, timeout=5).status_code == 401
        s.auth = ("esb", "wrong")
        assert s.post(erp.url, data=envelope("<erp:ListMaterials/>"), headers=HEADERS, timeout=5).status_code == 401
        s.auth = ("esb", "s3cret")
        assert s.get(erp.wsdl_url, timeout=5).status_code == 200
        materials = answer(s.post(erp.url, data=envelope("<erp:ListMaterials/>"), headers=HEADERS, timeout=5))
        assert len(materials.findall("MATERIALS/MATERIAL")) >= 6  # a new database is seeded
        assert erp.stats()["unauthorized"] == 3


def test_oversized_body_is_refused_unread(erp: ErpServerProcess, session: requests.Session) -> None:
    padding = "x" * (3 * 1024 * 1024)
    body = envelope(f"<erp:GetCustomer><KUNNR>1</KUNNR></erp:GetCustomer><!-- {padding} -->")
    response = session.post(erp.url, data=body, headers=HEADERS, timeout=10)
    assert response.status_code == 413
    assert "<CODE>REQUEST_TOO_LARGE</CODE>" in response.text


# -- SOAP 1.1 conformance (issue 7, case 10) ------------------------------------------------------


def envelope_fault(response: requests.Response) -> tuple[str | None, str | None, bool]:
    """faultcode, faultstring and whether there is a ``detail`` element, of a SOAP 1.1 fault answer."""
    assert response.status_code == 500, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    node = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert node is not None, response.text
    return node.findtext("faultcode"), node.findtext("faultstring"), node.find("detail") is not None


SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP_12_REQUEST = (
    f'<e:Envelope xmlns:e="{SOAP_12_ENV}" xmlns:erp="{NS}"><e:Body><erp:ListMaterials/></e:Body></e:Envelope>'
).encode()


@pytest.mark.parametrize(
    "content_type",
    ["text/xml; charset=utf-8", "application/soap+xml; charset=utf-8"],
    ids=["text-xml", "soap-1.2-media-type"],
)
def test_a_soap_12_envelope_gets_version_mismatch(
    erp: ErpServerProcess, session: requests.Session, content_type: str
) -> None:
    # SOAP 1.1 section 4.4.1: "The processing party found an invalid namespace for the SOAP Envelope element"
    response = session.post(erp.url, data=SOAP_12_REQUEST, headers={"Content-Type": content_type}, timeout=10)
    faultcode, faultstring, has_detail = envelope_fault(response)
    assert faultcode == "soap:VersionMismatch"
    assert "SOAP 1.2" in (faultstring or "")
    assert not has_detail  # nothing in the Body was processed


def test_a_must_understand_fault_has_no_detail(erp: ErpServerProcess, session: requests.Session) -> None:
    request = (
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:erp="{NS}" xmlns:t="urn:example:tx">'
        '<s:Header><t:Transaction s:mustUnderstand="1">5</t:Transaction></s:Header>'
        "<s:Body><erp:ListMaterials/></s:Body></s:Envelope>"
    ).encode()
    response = session.post(erp.url, data=request, headers=HEADERS, timeout=10)
    faultcode, faultstring, has_detail = envelope_fault(response)
    assert faultcode == "soap:MustUnderstand"
    assert "{urn:example:tx}Transaction" in (faultstring or "")
    # SOAP 1.1 section 4.4: "The detail element MUST NOT be used to carry information about error
    # information belonging to header entries."
    assert not has_detail


def test_a_must_understand_entry_for_another_actor_is_not_ours(
    erp: ErpServerProcess, session: requests.Session
) -> None:
    request = (
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:erp="{NS}" xmlns:t="urn:example:tx"><s:Header>'
        '<t:Transaction s:mustUnderstand="1" s:actor="urn:example:gateway">5</t:Transaction>'
        "</s:Header><s:Body><erp:ListMaterials/></s:Body></s:Envelope>"
    ).encode()
    response = session.post(erp.url, data=request, headers=HEADERS, timeout=10)
    assert answer(response).tag == f"{{{NS}}}ListMaterialsResponse"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/xml", "application/json", "text/xml-external", None],
)
def test_a_request_that_is_not_text_xml_gets_415_and_is_not_processed(
    erp: ErpServerProcess, session: requests.Session, content_type: str | None
) -> None:
    extref = unique("crm")
    request = envelope(f"<erp:CreateCustomer>{customer_xml(extref)}</erp:CreateCustomer>")
    headers = {"Content-Type": content_type} if content_type else {}
    before = erp.calls("CreateCustomer")
    response = session.post(erp.url, data=request, headers=headers, timeout=10)
    assert response.status_code == 415
    assert "<CODE>UNSUPPORTED_MEDIA_TYPE</CODE>" in response.text
    assert erp.calls("CreateCustomer") == before
    since = changed_since(session, erp, "Customers", 0, 5000)
    assert extref not in [c.findtext("EXTREF") for c in since.iterfind("CUSTOMERS/CUSTOMER")]


@pytest.mark.parametrize("content_type", ["text/xml", 'TEXT/XML; Charset="UTF-8"', "text/xml;charset=iso-8859-1"])
def test_text_xml_with_any_parameters_is_served(
    erp: ErpServerProcess, session: requests.Session, content_type: str
) -> None:
    response = session.post(
        erp.url, data=envelope("<erp:ListMaterials/>"), headers={"Content-Type": content_type}, timeout=10
    )
    assert answer(response).tag == f"{{{NS}}}ListMaterialsResponse"
