"""The ERP connector on answers zeep alone cannot read (tester findings F4, F20, F2, F1 of issue 6).

- F4: a value zeep cannot convert (``1,250.00`` as ``xsd:decimal``): CreateSalesOrder's answer is
  read by hand (the ERP holds the order), a material page too (the bad record is kept aside by the
  sync), anything else is a named transient error naming the field and the value;
- F20: a WSDL answered by a proxy's HTML page is a named transient error, and not kept;
- F2: 429 / 408 from a proxy are transient (retried; Retry-After honoured within the budget);
- F1: a fault code's prefix is resolved at the fault code element, whether a detail is there or not.

The reference ERP gives what it can (its wrong-answer switch rewrites values after the work is
done); the fake server the rest (one bad record among good ones, a proxy's pages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from backoffice.erp.process import ErpServerProcess
from canonical_model.errors import BackOfficeUnavailable, BusinessRejection, RequestRejected, TransientError
from connectors.erp import ErpClient, ErpSettings
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.services import CrmService
from flows.material_sync import CURSOR, SOURCE, sync_materials
from tests.connectors.fake_soap import FakeSoapServer, envelope, erp_fault, fake_soap_server, fault

RETRIES = 3
LIST_MATERIALS = envelope("<erp:ListMaterials/>")
MATERIAL_PAGE = envelope(
    "<erp:GetMaterialsChangedSince><SINCE_SEQ>0</SINCE_SEQ><MAX_ROWS>3</MAX_ROWS></erp:GetMaterialsChangedSince>"
)


def settings(url: str, **more: float) -> ErpSettings:
    return ErpSettings(url=url, retries=RETRIES, retry_wait=0.01, retry_wait_max=0.02, operation_timeout=5, **more)


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture
def erp_client(erp: ErpServerProcess) -> Iterator[ErpClient]:
    erp.set_wrong_answers({})
    erp.reset_stats()
    with ErpClient(settings(erp.url)) as client:
        yield client
    erp.set_wrong_answers({})


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeSoapServer]:
    with fake_soap_server() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeSoapServer) -> FakeSoapServer:
    """The module's fake server, told nothing yet (one server: stopping one takes half a second)."""
    fake_server.answers.clear()
    fake_server.documents.clear()
    fake_server.on_post = fake_server.on_get = None
    fake_server.answer_with(200, envelope("<erp:ListMaterialsResponse/>"))
    return fake_server


@pytest.fixture
def fake_client(fake: FakeSoapServer) -> Iterator[ErpClient]:
    with ErpClient(settings(fake.url)) as client:
        yield client


# -- F4: values zeep cannot convert ------------------------------------------------------------


CUSTOMER = {
    "NAME1": "Kupfer KG",
    "STRAS": "Hafenstr. 2",
    "ORT01": "Hamburg",
    "PSTLZ": "20457",
    "LAND1": "DEU",
    "WAERS": "EUR",
    "KLIMK": Decimal("100000.00"),
}


def _order(client: ErpClient, key: str) -> tuple[str, dict[str, object], list[dict[str, object]]]:
    """An order of a seeded customer: 1 x MAT-1001 at 1250.00 EUR."""
    kunnr = client.create_customer(CUSTOMER | {"EXTREF": key}).kunnr
    item = {"MATNR": "MAT-1001", "KWMENGE": Decimal("1"), "VRKME": "ST", "NETPR": Decimal("1250.00")}
    return key, {"KUNNR": kunnr, "WAERS": "EUR"}, [item]


@pytest.mark.parametrize(
    ("rules", "netwr"),
    [
        ({"SALES_ORDER/NETWR": "1,250.00"}, "1,250.00"),  # the tester's input
        ({"SALES_ORDER/NETWR": "abc"}, "abc"),
        ({"SALES_ORDER/ITEMS/ITEM/NETWR": "1,5"}, "1250.00"),  # an item's value: the order's own is fine
    ],
)
def test_an_accepted_order_whose_answer_zeep_cannot_convert_is_read_by_hand(
    erp: ErpServerProcess, erp_client: ErpClient, rules: dict[str, str], netwr: str, unique_name: str
) -> None:
    erp.set_wrong_answers({"CreateSalesOrder": rules})
    result = erp_client.create_sales_order(*_order(erp_client, f"SO-{unique_name}"))
    assert erp.calls("CreateSalesOrder") == 1, "no retry of an order the ERP accepted"
    assert result.created is True
    assert str(result.order["VBELN"]).strip(), result.order
    assert result.order["NETWR"] == netwr  # the ERP's text: erp_confirmation judges it
    assert result.order["WAERS"] == "EUR"


def test_any_other_answer_value_zeep_cannot_convert_is_a_named_transient_error(
    erp: ErpServerProcess, erp_client: ErpClient, unique_name: str
) -> None:
    kunnr = erp_client.create_customer(CUSTOMER | {"EXTREF": f"C-{unique_name}"}).kunnr
    erp.set_wrong_answers({"GetCustomer": {"CUSTOMER/KLIMK": "1,250.00"}})
    with pytest.raises(BackOfficeUnavailable) as caught:  # connectors.erp.errors.UnreadableAnswerValue
        erp_client.get_customer(kunnr)
    error = caught.value
    assert isinstance(error, TransientError)
    named = (getattr(error, "field", None), getattr(error, "value", None), error.operation)
    assert named == ("CUSTOMER.KLIMK", "1,250.00", "GetCustomer")
    assert "CUSTOMER.KLIMK='1,250.00'" in str(error)


def test_an_unreadable_value_is_clipped_in_the_error(erp: ErpServerProcess, erp_client: ErpClient) -> None:
    erp.set_wrong_answers({"ListMaterials": {"MATERIALS/MATERIAL/NETPR": "x" * 900}})
    with pytest.raises(BackOfficeUnavailable) as caught:
        erp_client.list_materials()
    assert getattr(caught.value, "field", None) == "MATERIALS.MATERIAL[0].NETPR"
    value = getattr(caught.value, "value", None)
    assert isinstance(value, str) and len(value) < 150 and "more chars" in value


def _page_with_one_bad_price(erp: ErpServerProcess) -> bytes:
    """The reference ERP's own first page of three materials, the second one's NETPR made unreadable."""
    response = requests.post(
        erp.url,
        data=MATERIAL_PAGE,
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": '"urn:crm-esb:erp:v1/GetMaterialsChangedSince"',
        },
        timeout=5,
    )
    assert response.status_code == 200 and response.content.count(b"<NETPR>") == 3, response.content[:300]
    first, second, rest = response.content.split(b"<NETPR>", 2)
    price, _tail = second.split(b"</NETPR>", 1)
    assert Decimal(price.decode())
    return first + b"<NETPR>" + second.replace(price, b"1,250.00", 1) + b"<NETPR>" + rest


def test_one_unreadable_price_in_the_material_feed_is_kept_aside_and_the_cursor_moves(
    tmp_path: Path, erp: ErpServerProcess, fake: FakeSoapServer, fake_client: ErpClient
) -> None:
    page = _page_with_one_bad_price(erp)
    fake.answer_operation("GetMaterialsChangedSince", 200, page.replace(b"<MORE>true</MORE>", b"<MORE>false</MORE>"))
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    crm = CrmService(session_factory(engine))
    try:
        result = sync_materials(crm, fake_client, page_size=3)
        assert (result.written, result.rejected) == (2, 1)
        rejects = crm.sync_rejects(SOURCE)
        assert len(rejects) == 1 and "NETPR" in rejects[0].reason and "1,250.00" in rejects[0].reason
        assert rejects[0].record is not None and rejects[0].record["NETPR"] == "1,250.00"
        assert len(crm.list_products()) == 2
        assert crm.cursor(CURSOR) > 0, "the cursor moved past the bad record"
    finally:
        engine.dispose()


# -- F20: a WSDL answered by a proxy's page ----------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [b"<html><body>captive portal</body></html>", b'<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>'],
)
def test_a_wsdl_answered_by_a_proxy_page_is_transient_and_not_kept(
    fake: FakeSoapServer, fake_client: ErpClient, page: bytes
) -> None:
    fake.answer_with(200, envelope("<erp:ListMaterialsResponse/>"))
    fake.documents["/erp?wsdl"] = page
    for _ in range(2):  # the second call reads the WSDL again
        with pytest.raises(BackOfficeUnavailable, match=r"WSDL unusable.*without binding"):
            fake_client.list_materials()
    gets = fake.gets
    assert gets >= 2
    del fake.documents["/erp?wsdl"]  # the proxy recovers: the same client works
    assert fake_client.list_materials() == []


# -- F2: a proxy's 429 / 408 ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 408])
def test_a_proxy_asking_to_retry_later_is_transient_and_retried(
    fake: FakeSoapServer, fake_client: ErpClient, status: int
) -> None:
    fake.answer_with(status, "<html><body>slow down</body></html>", "text/html")
    with pytest.raises(BackOfficeUnavailable, match=f"HTTP {status}"):
        fake_client.list_materials()
    assert fake.posts == RETRIES


def _throttled_once(retry_after: str) -> tuple[list[int], Callable[[BaseHTTPRequestHandler], None]]:
    """A proxy answering the first POST 429 with ``Retry-After``, the next ones with an empty material list."""
    posts: list[int] = []

    def on_post(handler: BaseHTTPRequestHandler) -> None:
        posts.append(1)
        if len(posts) == 1:
            status, content_type, body = 429, "text/html", b"<html>too many</html>"
        else:
            status, content_type, body = (
                200,
                "text/xml; charset=utf-8",
                envelope("<erp:ListMaterialsResponse/>").encode(),
            )
        handler.send_response(status)
        if status == 429:
            handler.send_header("Retry-After", retry_after)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return posts, on_post


def test_a_retry_after_within_the_budget_is_waited_and_the_call_retried(fake: FakeSoapServer) -> None:
    posts, fake.on_post = _throttled_once("0")
    with ErpClient(settings(fake.url)) as client:
        assert client.list_materials() == []
    assert len(posts) == 2


def test_a_retry_after_beyond_the_budget_gives_up_at_once(fake: FakeSoapServer) -> None:
    posts, fake.on_post = _throttled_once("3600")
    with ErpClient(settings(fake.url)) as client, pytest.raises(BackOfficeUnavailable, match="HTTP 429"):
        client.list_materials()
    assert len(posts) == 1, "not retried: waiting an hour would only end in a timeout"


# -- F1: the fault code's prefix, resolved where it is written -----------------------------------

VENDOR = 'xmlns:q="urn:vendor"'


def _fault_declaring(code: str, detail: str, on_envelope: str = "", on_code: str = "") -> str:
    body = fault(code, "x", detail).replace("<faultcode>", f"<faultcode {on_code}>" if on_code else "<faultcode>")
    return body.replace("<soap:Envelope ", f"<soap:Envelope {on_envelope} ") if on_envelope else body


@pytest.mark.parametrize(
    ("code", "detail", "on_envelope", "on_code"),
    [
        ("q:Server", "", VENDOR, ""),  # was transient: the prefix was taken as SOAP's without a detail
        ("q:Server", erp_fault("INTERNAL_ERROR", "busy"), VENDOR, ""),
        ("e:Server.Busy", "", "", 'xmlns:e="urn:crm-esb:erp:v1"'),  # was transient
        ("q:Client.X", erp_fault("UNKNOWN_MATERIAL", "no", "MATNR", "M"), "", 'xmlns:q="urn:other"'),  # was a rejection
    ],
)
def test_a_fault_code_in_a_vendor_namespace_is_refused_whether_or_not_a_detail_is_there(
    fake: FakeSoapServer, fake_client: ErpClient, code: str, detail: str, on_envelope: str, on_code: str
) -> None:
    fake.answer_with(500, _fault_declaring(code, detail, on_envelope, on_code))
    with pytest.raises(RequestRejected) as caught:
        fake_client.list_materials()
    assert not isinstance(caught.value, BusinessRejection)
    assert code in str(caught.value)
    assert fake.posts == 1


def test_soaps_own_prefix_declared_on_the_fault_code_is_still_soaps(
    fake: FakeSoapServer, fake_client: ErpClient
) -> None:
    on_code = 'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
    fake.answer_with(500, _fault_declaring("s:Server.Busy", "", "", on_code))
    with pytest.raises(BackOfficeUnavailable):
        fake_client.list_materials()
