"""An ERP answer the canonical model cannot hold is a named permanent error, never "unexpected".

The answers are the reference ERP's own (CreateSalesOrder, GetMaterialsChangedSince) with one value
made invalid, served by a small fake server in a thread: the reference ERP never answers that way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from backoffice.erp.process import ErpServerProcess
from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.errors import EsbError
from connectors.erp import ErpClient, ErpSettings
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService
from flows.material_sync import sync_materials
from flows.order_to_erp import OrderToErp
from tests.connectors.fake_soap import envelope, fake_soap_server


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


def crm_service(path: Path) -> CrmService:
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    return CrmService(session_factory(engine))


def test_an_erp_answer_that_does_not_fit_order_confirmed_still_confirms_the_order(
    erp: ErpServerProcess, tmp_path: Path
) -> None:
    with ErpClient(ErpSettings(url=erp.url)) as real:
        kunnr = real.create_customer(
            {
                "EXTREF": "crm-1",
                "NAME1": "Answer Test GmbH",
                "LAND1": "DEU",
                "WAERS": "EUR",
                "ZTERM": "NT30",
                "KLIMK": Decimal("30000.00"),
            }
        ).kunnr
        request = envelope(
            f"<erp:CreateSalesOrder><IDEMPOTENCY_KEY>k-{uuid.uuid4().hex}</IDEMPOTENCY_KEY>"
            f"<HEADER><KUNNR>{kunnr}</KUNNR></HEADER>"
            "<ITEMS><ITEM><MATNR>MAT-1002</MATNR><KWMENGE>1</KWMENGE></ITEM></ITEMS></erp:CreateSalesOrder>"
        )
        answer = requests.post(erp.url, data=request, headers={"Content-Type": "text/xml"}, timeout=10).content
        read = envelope(f"<erp:GetCustomer><KUNNR>{kunnr}</KUNNR></erp:GetCustomer>")
        customer_answer = requests.post(erp.url, data=read, headers={"Content-Type": "text/xml"}, timeout=10).content
    assert b"<WAERS>EUR</WAERS>" in answer and b"<VBELN>" in answer and b"<EXTREF>crm-1</EXTREF>" in customer_answer
    crm = crm_service(tmp_path / "crm.db")
    customer = crm.create_customer(
        NewCustomer.model_validate(
            {
                "name": "Answer Test GmbH",
                "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "1", "country": "DE"}],
            }
        )
    )
    crm.record_cross_reference("erp", "customer", customer.id, kunnr)
    order = crm.place_order(
        NewOrder(
            customer_id=customer.id,
            lines=[NewOrderLine(product_id="MAT-1002", quantity=Decimal(1), unit="H87", unit_price=Decimal("89.50"))],
        )
    )
    published: list[Envelope] = []
    with fake_soap_server() as fake, ErpClient(ErpSettings(url=fake.url)) as erp_client:
        fake.answer_with(200, answer.replace(b"<WAERS>EUR</WAERS>", b"<WAERS>eur</WAERS>"))
        # the route checks the CRM's link against the ERP once: the customer is ours
        fake.answer_operation("GetCustomer", 200, customer_answer.replace(b"crm-1", customer.id.encode()))
        handler = OrderToErp(crm, erp_client, published.append)
        handler(Envelope.new(events.ORDER_PLACED, order, source="/crm", subject=customer.id))
    # The ERP holds the order, and it is the system of record: the order is confirmed, never failed or
    # retried; the unusable currency is left out (and logged), so the CRM flags a net value mismatch.
    assert [e.type for e in published] == [events.ORDER_CONFIRMED]
    assert published[0].data["currency"] is None and published[0].data["erp_order_number"]


def test_a_material_page_that_does_not_fit_product_never_escapes_as_a_pydantic_error(
    erp: ErpServerProcess, tmp_path: Path
) -> None:
    request = envelope(
        "<erp:GetMaterialsChangedSince><SINCE_SEQ>0</SINCE_SEQ><MAX_ROWS>500</MAX_ROWS></erp:GetMaterialsChangedSince>"
    )
    answer = requests.post(erp.url, data=request, headers={"Content-Type": "text/xml"}, timeout=10).content
    assert b"<NETPR>1250.00</NETPR>" in answer
    crm = crm_service(tmp_path / "crm.db")
    with fake_soap_server() as fake, ErpClient(ErpSettings(url=fake.url)) as erp_client:
        fake.answer_with(200, answer.replace(b"<NETPR>1250.00</NETPR>", b"<NETPR>-1250.00</NETPR>", 1))
        try:
            sync_materials(crm, erp_client)
        except EsbError as exc:  # the page is refused as a whole, named (or the record is set aside: no raise)
            assert "Product" in str(exc) and "list_price" in str(exc)
