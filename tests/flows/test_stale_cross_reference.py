"""Case 9's other half: the CRM kept, the ERP reset. A link the CRM already holds may now name another
customer's ERP account (or none): the order route checks it against the ERP once and refuses to book
the order there, naming both sides, instead of confirming it on the wrong account.

Against the reference ERP in its own process; the route is called as the worker calls it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model import events
from canonical_model.envelope import Envelope
from connectors.erp import ErpClient, ErpSettings
from crm_core.db import create_db_engine, session_factory
from crm_core.errors import StaleCrossReference
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService
from flows.order_to_erp import OrderToErp


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


def _crm(path: Path) -> CrmService:
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    return CrmService(session_factory(engine))


def _placed(crm: CrmService, name: str) -> tuple[str, Envelope]:
    customer = crm.create_customer(
        NewCustomer.model_validate(
            {"name": name, "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}]}
        )
    )
    line = NewOrderLine(product_id="MAT-1002", quantity=Decimal(1), unit="H87", unit_price=Decimal("89.50"))
    order = crm.place_order(NewOrder(customer_id=customer.id, lines=[line]))
    return customer.id, Envelope.new(events.ORDER_PLACED, order, source="/crm", subject=customer.id)


def test_a_link_to_another_customers_erp_account_is_refused_before_any_order_is_booked(
    erp: ErpServerProcess, tmp_path: Path
) -> None:
    crm = _crm(tmp_path / "crm.db")
    with ErpClient(ErpSettings(url=erp.url)) as client:
        # the reset ERP gave this number to someone else (EXTREF: another CRM's id)
        theirs = client.create_customer(
            {"EXTREF": "CUST-OTHER-CRM", "NAME1": "Someone Else GmbH", "LAND1": "DEU", "WAERS": "EUR"}
        ).kunnr
        ours, placed = _placed(crm, "Kept GmbH")
        crm.record_cross_reference("erp", "customer", ours, theirs)  # the link kept from before the reset
        route = OrderToErp(crm, client, lambda envelope: None)
        before = erp.calls("CreateSalesOrder")
        with pytest.raises(StaleCrossReference) as stale:
            route(placed)
        assert erp.calls("CreateSalesOrder") == before, "booked on another customer's account"
        said = str(stale.value)
        assert ours in said and theirs in said and "CUST-OTHER-CRM" in said and "reset" in said

        # a number the reset ERP does not have at all
        gone, placed = _placed(crm, "Gone GmbH")
        crm.record_cross_reference("erp", "customer", gone, "0000999999")
        with pytest.raises(StaleCrossReference, match="0000999999 does not exist"):
            route(placed)


def test_a_link_the_erp_confirms_is_checked_once_and_the_order_goes_through(
    erp: ErpServerProcess, tmp_path: Path
) -> None:
    crm = _crm(tmp_path / "crm.db")
    published: list[Envelope] = []
    with ErpClient(ErpSettings(url=erp.url)) as client:
        ours, placed = _placed(crm, "Linked GmbH")
        kunnr = client.create_customer(
            {"EXTREF": ours, "NAME1": "Linked GmbH", "LAND1": "DEU", "WAERS": "EUR", "KLIMK": Decimal("5000.00")}
        ).kunnr
        crm.record_cross_reference("erp", "customer", ours, kunnr)
        route = OrderToErp(crm, client, published.append)
        reads = erp.calls("GetCustomer")
        route(placed)
        route(placed)  # the same order again (a redelivery): the link is not checked a second time
    assert [e.type for e in published] == [events.ORDER_CONFIRMED, events.ORDER_CONFIRMED]
    assert erp.calls("GetCustomer") == reads + 1
