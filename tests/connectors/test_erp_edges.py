"""The ERP connector on the answers real ERPs and proxies give (issue 6, cases 1, 2, 3 and 6).

The reference ERP (a real SOAP server in its own process) gives what it can: its real answers,
its faults, and its request counts proving a refused text never left the connector. A small HTTP
server in a thread (``fake_soap``) gives the answers the reference ERP never does: a proxy's HTML
503, dotted fault codes, a newline before the XML declaration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from backoffice.erp.process import ErpServerProcess
from canonical_model.errors import (
    BackOfficeUnavailable,
    BusinessRejection,
    MappingError,
    PermanentError,
    RequestRejected,
    TransientError,
)
from connectors.erp import ErpClient, ErpSettings
from tests.connectors.fake_soap import FakeSoapServer, envelope, erp_fault, fake_soap_server, fault

RETRIES = 3
LIST_MATERIALS = envelope("<erp:ListMaterials/>")


def settings(url: str) -> ErpSettings:
    return ErpSettings(url=url, retries=RETRIES, retry_wait=0.01, retry_wait_max=0.02, operation_timeout=5)


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture(scope="module")
def erp_client(erp: ErpServerProcess) -> Iterator[ErpClient]:
    with ErpClient(settings(erp.url)) as client:
        yield client


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSoapServer]:
    with fake_soap_server() as server:
        yield server


@pytest.fixture(scope="module")
def fake_client(fake: FakeSoapServer) -> Iterator[ErpClient]:
    with ErpClient(settings(fake.url)) as client:
        yield client


@pytest.fixture(scope="module")
def real_materials_answer(erp: ErpServerProcess) -> bytes:
    """The reference ERP's own bytes for ListMaterials (served again by the fake, with noise in front)."""
    response = requests.post(erp.url, data=LIST_MATERIALS, headers={"Content-Type": "text/xml; charset=utf-8"})
    assert response.status_code == 200 and response.content.startswith(b"<?xml")
    return response.content


# -- case 1: an HTTP failure that is not a SOAP fault is decided by its status ---------------------

HTML_503 = "<html><body><h1>503 Service Unavailable</h1></body></html>"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (HTML_503, "text/html"),  # the input
        ("<error>down for maintenance</error>", "application/xml"),  # XML of another kind
        ("Service Unavailable", "text/plain"),  # not XML at all
        ("", "text/html"),  # nothing
    ],
)
def test_a_503_without_a_soap_fault_is_transient_and_retried(
    fake: FakeSoapServer, fake_client: ErpClient, body: str, content_type: str
) -> None:
    fake.answer_with(503, body, content_type)
    with pytest.raises(BackOfficeUnavailable) as caught:
        fake_client.list_materials(correlation_id="c-503")
    error = caught.value
    assert "HTTP 503" in error.message and content_type in error.message
    assert (error.system, error.operation, error.correlation_id) == ("erp", "ListMaterials", "c-503")
    assert fake.posts == RETRIES  # retried in the connector, then the route requeues (transient)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_any_5xx_html_page_is_transient(fake: FakeSoapServer, fake_client: ErpClient, status: int) -> None:
    fake.answer_with(status, HTML_503.replace("503", str(status)), "text/html; charset=iso-8859-1")
    with pytest.raises(BackOfficeUnavailable, match=f"HTTP {status}"):
        fake_client.list_materials()


@pytest.mark.parametrize("status", [400, 403, 404, 413])
def test_a_4xx_page_from_a_proxy_is_a_request_rejection_naming_the_status(
    fake: FakeSoapServer, fake_client: ErpClient, status: int
) -> None:
    fake.answer_with(status, f"<html><body><h1>{status}</h1></body></html>", "text/html")
    with pytest.raises(RequestRejected) as caught:
        fake_client.list_materials()
    assert f"HTTP {status} (text/html)" in caught.value.message
    assert not isinstance(caught.value, BusinessRejection)
    assert fake.posts == 1


def test_a_soap_fault_on_http_500_is_still_read_as_a_fault(fake: FakeSoapServer, fake_client: ErpClient) -> None:
    detail = erp_fault("UNKNOWN_MATERIAL", "material MAT-9 does not exist", "ITEMS.ITEM[0].MATNR", "MAT-9")
    fake.answer_with(500, fault("soap:Client", "UNKNOWN_MATERIAL: no", detail))
    with pytest.raises(BusinessRejection) as caught:
        fake_client.list_materials()
    assert (caught.value.code, caught.value.field, caught.value.value) == (
        "UNKNOWN_MATERIAL",
        "ITEMS.ITEM[0].MATNR",
        "MAT-9",
    )


def test_the_real_erp_outage_is_still_transient(erp: ErpServerProcess, erp_client: ErpClient) -> None:
    erp_client.list_materials()
    erp.reset_stats()
    erp.set_faults(outage=True)
    try:
        with pytest.raises(BackOfficeUnavailable, match="HTTP 503"):
            erp_client.list_materials()
    finally:
        erp.set_faults(outage=False)
    assert erp.calls("ListMaterials") == RETRIES


# -- case 3: SOAP 1.1 fault codes refined with dots ------------------------------------------------


def test_a_dotted_server_fault_is_transient_and_not_retried_in_the_connector(
    fake: FakeSoapServer, fake_client: ErpClient
) -> None:
    fake.answer_with(500, fault("soap:Server.userException", "java.lang.NullPointerException"))
    with pytest.raises(BackOfficeUnavailable) as caught:
        fake_client.list_materials()
    assert "soap:Server.userException" in caught.value.message
    assert fake.posts == 1  # a fault is an answer: the route decides to retry, not the connector


def test_a_dotted_client_fault_with_the_erp_detail_keeps_code_field_and_value(
    fake: FakeSoapServer, fake_client: ErpClient
) -> None:
    detail = erp_fault("UNKNOWN_MATERIAL", "material MAT-9999 does not exist", "ITEMS.ITEM[1].MATNR", "MAT-9999")
    fake.answer_with(500, fault("soap:Client.BadArguments", "UNKNOWN_MATERIAL: no such material", detail))
    with pytest.raises(BusinessRejection) as caught:
        fake_client.list_materials()
    error = caught.value
    assert (error.code, error.field, error.value) == ("UNKNOWN_MATERIAL", "ITEMS.ITEM[1].MATNR", "MAT-9999")
    assert error.message == "material MAT-9999 does not exist"


def test_a_dotted_client_fault_without_the_erp_detail_is_a_request_rejection(
    fake: FakeSoapServer, fake_client: ErpClient
) -> None:
    fake.answer_with(500, fault("soap:Client.Authentication", "who are you"))
    with pytest.raises(RequestRejected, match=r"soap:Client\.Authentication") as caught:
        fake_client.list_materials()
    assert not isinstance(caught.value, BusinessRejection)


def test_a_fault_code_in_another_namespace_is_not_mistaken_for_soaps(
    fake: FakeSoapServer, fake_client: ErpClient
) -> None:
    # erp: is declared as the ERP's namespace: "erp:Server" is the ERP's own code, not SOAP's Server class
    fake.answer_with(500, fault("erp:Server.Busy", "busy", erp_fault("INTERNAL_ERROR", "busy")))
    with pytest.raises(RequestRejected, match=r"erp:Server.Busy.*INTERNAL_ERROR"):
        fake_client.list_materials()


@pytest.mark.parametrize(
    ("code", "error"), [("soap:Receiver.Overload", TransientError), ("soap:Bogus", PermanentError)]
)
def test_other_codes(fake: FakeSoapServer, fake_client: ErpClient, code: str, error: type[Exception]) -> None:
    fake.answer_with(500, fault(code, "x"))
    with pytest.raises(error):
        fake_client.list_materials()


# -- case 6: noise before the XML declaration; unreadable answers say why --------------------------


@pytest.mark.parametrize("noise", [b"\n", b"\r\n  \t", b"\xef\xbb\xbf", b"\n\xef\xbb\xbf", b"\xef\xbb\xbf\n"])
def test_an_answer_with_whitespace_or_a_bom_before_the_declaration_is_read(
    fake: FakeSoapServer, fake_client: ErpClient, erp_client: ErpClient, real_materials_answer: bytes, noise: bytes
) -> None:
    fake.answer_with(200, noise + real_materials_answer)
    materials = fake_client.list_materials()
    assert materials and materials == erp_client.list_materials()
    assert fake.posts == 1


def test_an_unreadable_answer_is_transient_and_says_why(fake: FakeSoapServer, fake_client: ErpClient) -> None:
    fake.answer_with(200, "\n<?xml version='1.0'?><soap:Envelope><a></b>")
    with pytest.raises(BackOfficeUnavailable) as caught:
        fake_client.list_materials()
    message = caught.value.message
    assert "unreadable answer" in message and "HTTP 200" in message
    assert "Opening and ending tag mismatch" in message or "prefix soap" in message  # the parser's words
    assert fake.posts == 1


def test_the_reason_of_an_unreadable_answer_is_clipped(fake: FakeSoapServer, fake_client: ErpClient) -> None:
    fake.answer_with(200, "<" + "x" * 5000 + " oops")
    with pytest.raises(BackOfficeUnavailable) as caught:
        fake_client.list_materials()
    assert len(caught.value.message) < 400


def test_a_200_answer_that_is_xml_of_another_kind_is_unreadable(fake: FakeSoapServer, fake_client: ErpClient) -> None:
    fake.answer_with(200, "<error>down for maintenance</error>")
    with pytest.raises(BackOfficeUnavailable, match="Envelope root"):
        fake_client.list_materials()


def test_a_wsdl_with_a_newline_before_the_declaration_is_read(real_materials_answer: bytes) -> None:
    with fake_soap_server() as fake, ErpClient(settings(fake.url)) as client:
        fake.wsdl_prefix = b"\n\xef\xbb\xbf"
        fake.answer_with(200, b"\n" + real_materials_answer)
        assert client.list_materials()


def test_a_correlation_id_unfit_for_a_header_does_not_break_the_call(
    fake: FakeSoapServer, fake_client: ErpClient, real_materials_answer: bytes
) -> None:
    fake.answer_with(200, real_materials_answer)
    fake.headers.clear()
    assert fake_client.list_materials(correlation_id="c-1\r\nX-Injected: 1 \u4e2d" + "x" * 500)
    sent = fake.headers[-1]["X-Correlation-ID"]
    assert sent.startswith("c-1??X-Injected: 1 ?") and len(sent) <= 128 and "X-Injected" not in fake.headers[-1]


# -- case 2 at the ERP edge: text XML 1.0 cannot carry ---------------------------------------------


def customer(**overrides: Any) -> dict[str, Any]:
    return {
        "EXTREF": f"crm-{uuid.uuid4().hex[:10]}",
        "NAME1": "Nordlicht Technik GmbH",
        "STRAS": "Hafenstrasse 1",
        "ORT01": "Hamburg",
        "PSTLZ": "20457",
        "LAND1": "DEU",
        "WAERS": "EUR",
        "KLIMK": Decimal("30000.00"),
        "ZTERM": "NT30",
        **overrides,
    }


def test_a_customer_name_xml_cannot_carry_is_refused_naming_the_field_and_never_sent(
    erp: ErpServerProcess, erp_client: ErpClient
) -> None:
    erp_client.list_materials()  # the WSDL is loaded
    erp.reset_stats()
    with pytest.raises(MappingError) as caught:
        erp_client.create_customer(customer(NAME1="Nordlicht\x0bTechnik GmbH"), correlation_id="c-2")
    error = caught.value
    assert isinstance(error, PermanentError)
    assert error.path == "CUSTOMER.NAME1" and error.value == "Nordlicht\x0bTechnik GmbH"
    assert "CUSTOMER.NAME1='Nordlicht\\x0bTechnik GmbH'" in str(error) and "U+000B" in str(error)
    assert (error.system, error.operation, error.correlation_id) == ("erp", "CreateCustomer", "c-2")
    assert isinstance(error.__cause__, ValueError)
    assert erp.calls("CreateCustomer") == 0
    assert erp_client.create_customer(customer()).created  # the client is fine afterwards


def test_an_order_line_xml_cannot_carry_is_refused_naming_its_path(
    erp: ErpServerProcess, erp_client: ErpClient
) -> None:
    kunnr = erp_client.create_customer(customer()).kunnr
    items = [{"MATNR": "MAT-1001", "KWMENGE": Decimal("1")}, {"MATNR": "MAT-\x001002", "KWMENGE": Decimal("1")}]
    with pytest.raises(MappingError) as caught:
        erp_client.create_sales_order("k-" + uuid.uuid4().hex, {"KUNNR": kunnr}, items)
    assert caught.value.path == "ITEMS.ITEM[1].MATNR" and "U+0000" in str(caught.value)


def test_a_long_value_is_clipped_in_the_refusal(erp_client: ErpClient) -> None:
    with pytest.raises(MappingError) as caught:
        erp_client.create_customer(customer(STRAS="x" * 5000 + "\x0c"))
    assert caught.value.path == "CUSTOMER.STRAS" and len(str(caught.value)) < 400
