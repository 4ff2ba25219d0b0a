"""An ERP answer the canonical model cannot hold is a named permanent error, never "unexpected".

The answer is the reference ERP's own CreateSalesOrder answer with one value made invalid
(a currency in lower case), served by a small fake server in a thread: the reference ERP never
answers that way.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from backoffice.erp.process import ErpServerProcess
from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.errors import InvalidMessage
from connectors.erp import ErpClient, ErpSettings
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService
from flows.order_to_erp import OrderToErp
from tests.connectors.fake_soap import envelope, fake_soap_server


def test_an_erp_answer_that_does_not_fit_order_confirmed_is_invalid_not_unexpected(tmp_path: Path) -> None:
    with ErpServerProcess(tmp_path / "erp.db", seed=True) as erp, ErpClient(ErpSettings(url=erp.url)) as real:
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
    assert b"<WAERS>EUR</WAERS>" in answer and b"<VBELN>" in answer
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    crm = CrmService(session_factory(engine))
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
        handler = OrderToErp(crm, erp_client, published.append)
        with pytest.raises(InvalidMessage) as caught:
            handler(Envelope.new(events.ORDER_PLACED, order, source="/crm", subject=customer.id))
    assert "CreateSalesOrder" in str(caught.value) and "OrderConfirmed: currency" in str(caught.value)
    assert published == []
    engine.dispose()
