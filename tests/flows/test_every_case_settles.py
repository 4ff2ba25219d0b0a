"""Issue 6, acceptance 3: after every case, no CRM order is left ``placed`` once its message has left
the route (settled, or dead-lettered for any reason).

The whole worker runs (embedded transport, SQLite, 4 shards: the defaults) against a small fake SOAP server in a
thread that answers each case's way; its good answers are the reference ERP's own bytes, recorded
once from the real server. One order per case, settled before the next is placed, each ending in the
state the issue names; at the end no order of the CRM is ``placed``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from crm_core.models import CustomerRow
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine, OrderView
from esb.app import Application
from esb.config import EsbSettings
from esb.worker import Worker
from tests.connectors.fake_soap import FakeSoapServer, envelope, erp_fault, fake_soap_server, fault

HTML_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>"


@dataclass(frozen=True)
class Recorded:
    """The reference ERP's own answers, to be served again by the fake."""

    create_sales_order: bytes
    create_customer: bytes
    get_customer: bytes
    kunnr: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as erp:

        def post(body: str) -> bytes:
            answer = requests.post(erp.url, data=envelope(body), headers={"Content-Type": "text/xml"}, timeout=10)
            assert answer.status_code == 200, answer.text
            return answer.content

        customer = post(
            "<erp:CreateCustomer><CUSTOMER><EXTREF>crm-rec</EXTREF><NAME1>Recorded GmbH</NAME1><LAND1>DEU</LAND1>"
            "<WAERS>EUR</WAERS><KLIMK>50000.00</KLIMK><ZTERM>NT30</ZTERM></CUSTOMER></erp:CreateCustomer>"
        )
        kunnr = customer.split(b"<KUNNR>")[1].split(b"</KUNNR>")[0].decode()
        read = post(f"<erp:GetCustomer><KUNNR>{kunnr}</KUNNR></erp:GetCustomer>")
        order = post(
            f"<erp:CreateSalesOrder><IDEMPOTENCY_KEY>k-{uuid.uuid4().hex}</IDEMPOTENCY_KEY>"
            f"<HEADER><KUNNR>{kunnr}</KUNNR></HEADER>"
            "<ITEMS><ITEM><MATNR>MAT-1002</MATNR><KWMENGE>1</KWMENGE></ITEM></ITEMS></erp:CreateSalesOrder>"
        )
    assert b"<NETWR>" in order and b"<VBELN>" in order
    assert b"<EXTREF>crm-rec</EXTREF>" in read
    return Recorded(order, customer, read, kunnr)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Application, FakeSoapServer]]:
    with fake_soap_server() as fake:
        settings = EsbSettings(
            data_dir=tmp_path,
            erp={"url": fake.url, "retry_wait": 0.01, "retry_wait_max": 0.02},  # type: ignore[arg-type]
            # the retry schedule and the breaker's pause scaled down (defaults: 1 s .. 10 min, 30 s), so that
            # an order whose every try fails is dead-lettered within the test's wait, breaker and all
            worker={  # type: ignore[arg-type]
                "material_sync_seconds": 0,
                "retry_schedule": [0.1, 0.2, 0.4],
                "breaker_interval": 0.2,
            },
        )
        with Application(settings) as application, Worker(application):
            yield application, fake


def _customer(name: str = "Case GmbH") -> NewCustomer:
    return NewCustomer.model_validate(
        {"name": name, "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}]}
    )


def _order(customer_id: str) -> NewOrder:
    line = NewOrderLine(product_id="MAT-1002", quantity=Decimal(1), unit="H87", unit_price=Decimal("89.50"))
    return NewOrder(customer_id=customer_id, lines=[line])


def _settled(app: Application, order_id: str, timeout: float = 30.0) -> OrderView:
    deadline = time.monotonic() + timeout
    while True:
        view = app.crm.get_order(order_id)
        if view.status != OrderStatus.PLACED or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def test_after_every_case_no_order_is_left_placed(app: tuple[Application, FakeSoapServer], recorded: Recorded) -> None:
    application, fake = app
    crm = application.crm
    linked = crm.create_customer(_customer())
    crm.record_cross_reference("erp", "customer", linked.id, recorded.kunnr)
    # the order route checks that link against the ERP once: the ERP's customer is this CRM's
    fake.answer_operation("GetCustomer", 200, recorded.get_customer.replace(b"crm-rec", linked.id.encode()))
    good = recorded.create_sales_order
    detail = erp_fault("UNKNOWN_MATERIAL", "no such material", "ITEMS.ITEM[0].MATNR", "MAT-1002")
    # (case, status, content type, body, the state it must end in, a text its reason or number holds)
    cases: list[tuple[str, int, str, bytes, OrderStatus, str]] = [
        ("1: 503 HTML page", 503, "text/html", HTML_503, OrderStatus.FAILED, "503"),
        ("1: 503 other XML", 503, "text/xml", b"<error>down for maintenance</error>", OrderStatus.FAILED, "503"),
        (
            "3: Server.userException",
            500,
            "text/xml",
            fault("soap:Server.userException", "java.lang.NullPointerException").encode(),
            OrderStatus.FAILED,
            "Server.userException",
        ),
        (
            "3: Client.BadArguments + detail",
            500,
            "text/xml",
            fault("soap:Client.BadArguments", "no such material", detail).encode(),
            OrderStatus.REJECTED,
            "lines[0].product_id",
        ),
        (
            "5: NETWR with three decimals",
            200,
            "text/xml",
            good.replace(b"<NETWR>89.50</NETWR>", b"<NETWR>89.505</NETWR>"),
            OrderStatus.CONFIRMED,
            "",
        ),
        ("6: newline before <?xml", 200, "text/xml", b"\n" + good, OrderStatus.CONFIRMED, ""),
        (
            "5: NETWR in exponent form",
            200,
            "text/xml",
            good.replace(b"<NETWR>89.50</NETWR>", b"<NETWR>1E3</NETWR>"),
            OrderStatus.CONFIRMED,
            "",
        ),
    ]
    seen: list[str] = []
    for case, status, content_type, body, expected, said in cases:
        fake.answer_with(status, body, content_type)
        order = crm.place_order(_order(linked.id))
        view = _settled(application, order.id)
        text = f"{view.erp_order_number} {view.rejection_code} {view.rejection_reason} {view.failure_reason}"
        assert (view.status, said in text) == (expected, True), f"case {case}: {view}"
        seen.append(order.id)

    # case 5: the ERP's three decimals are kept and the difference flagged
    five = crm.get_order(seen[4])
    assert five.erp_net_value == Decimal("89.505") and five.net_value_mismatch
    exponent = crm.get_order(seen[6])
    assert exponent.erp_net_value == Decimal(1000) and exponent.net_value_mismatch

    # case 2: a stored name XML cannot carry: rejected naming customer.name, the ERP never asked
    odd = crm.create_customer(_customer("Nordlicht Technik GmbH"))
    with application.sessions() as session, session.begin():
        session.execute(update(CustomerRow).where(CustomerRow.id == odd.id).values(name="Nordlicht\x0bTechnik GmbH"))

    def sales_order_posts() -> int:
        return sum("CreateSalesOrder" in h.get("SOAPAction", "") for h in fake.headers)

    posts = sales_order_posts()
    view = _settled(application, crm.place_order(_order(odd.id)).id)
    assert (view.status, view.rejection_code) == (OrderStatus.REJECTED, "MAPPING")
    assert "customer.name" in (view.rejection_reason or "") and "\\x0b" in (view.rejection_reason or "")
    assert sales_order_posts() == posts

    # case 9: the ERP hands out a number the CRM already links to another customer
    fake.answer_with(200, recorded.create_customer)
    stranger = crm.create_customer(_customer("Second GmbH"))
    view = _settled(application, crm.place_order(_order(stranger.id)).id)
    assert view.status == OrderStatus.FAILED and recorded.kunnr in (view.failure_reason or "")
    assert linked.id in (view.failure_reason or "") and stranger.id in (view.failure_reason or "")

    assert [v.id for v in crm.list_orders() if v.status == OrderStatus.PLACED] == []
