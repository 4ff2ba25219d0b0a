"""Issue 6, money as a class (tester F16, F21): a catalogue price is money in its own currency.

F16: the reference ERP's list prices are EUR; an order of a USD or JPY customer that gives no unit
price used to take them 1:1 (1,250.00 EUR became 1,250.00 USD), and the JPY order was refused for
``4.200 has more decimals than JPY has``, a price the user never gave. A catalogue price is used only
for an order in its currency; otherwise the line needs its own unit price.

F21: the material sync took list prices the money rule refuses (10.50 JPY, a price in XXX, a code
without minor units); such a record is kept aside in ``sync_rejects`` like any other bad record.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from connectors.erp.client import ErpClient
from crm_core.db import create_db_engine, session_factory
from crm_core.errors import InvalidRequest
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer
from crm_core.services import CrmService
from esb.demo import new_order
from flows.material_sync import sync_materials
from tests.flows.test_text_edges import _erp_sql, _settings

SOURCE = "erp.materials"


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        _add_material(server, "MAT-8101", "Yen priced, finer than a yen", 1050, "JPY")  # 10.50 JPY
        _add_material(server, "MAT-8102", "Priced in a code without minor units", 100, "XXX")
        _add_material(server, "MAT-8103", "Yen priced, whole yen", 1000, "JPY")  # 10.00 JPY = 10 JPY
        yield server


def _add_material(erp: ErpServerProcess, matnr: str, name: str, cents: int, waers: str) -> None:
    _erp_sql(
        erp,
        "INSERT INTO materials (matnr, maktx, meins, netpr, waers, lvorm, chseq)"
        " VALUES (:matnr, :maktx, 'ST', :netpr, :waers, 0, :seq)",
        matnr=matnr,
        maktx=name,
        netpr=cents,
        waers=waers,
    )


@pytest.fixture
def crm(tmp_path: Path, erp: ErpServerProcess) -> Iterator[CrmService]:
    """A CRM whose catalogue was synced from the reference ERP (EUR list prices, and the three above)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    crm = CrmService(session_factory(engine))
    with ErpClient(_settings(erp.url)) as client:
        sync_materials(crm, client)
    yield crm
    engine.dispose()


def _customer(crm: CrmService, currency: str) -> str:
    customer = crm.create_customer(
        NewCustomer.model_validate(
            {
                "name": f"Kunde {currency}",
                "currency": currency,
                "credit_limit": "10000000",
                "addresses": [{"street": "Hafenstr. 1", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
            }
        )
    )
    return customer.id


# -- F21 ---------------------------------------------------------------------------------------


def test_a_list_price_the_money_rule_refuses_is_kept_aside_not_synced(crm: CrmService) -> None:
    products = {product.id: product for product in crm.list_products()}
    rejects = {reject.record_key: reject.reason for reject in crm.sync_rejects(SOURCE)}
    assert "MAT-8101" not in products and "MAT-8102" not in products
    assert rejects["MAT-8101"] == "list_price=10.50: more decimals than JPY has (0)"
    assert rejects["MAT-8102"] == "currency='XXX': not an ISO 4217 currency with minor units"
    assert (products["MAT-8103"].list_price, products["MAT-8103"].currency) == (Decimal("10"), "JPY")
    assert set(rejects) == {"MAT-8101", "MAT-8102"}


# -- F16 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["USD", "JPY"])
def test_a_catalogue_price_in_another_currency_is_not_taken(crm: CrmService, currency: str) -> None:
    customer = _customer(crm, currency)
    # the tester's order: MAT-1001 (1,250.00 EUR) and 1.5 x MAT-1003 (4.20 EUR), no unit prices given
    with pytest.raises(InvalidRequest) as refused:
        crm.place_order(new_order(customer, ("MAT-1001", "1", None, None), ("MAT-1003", "1.5", None, None)))
    assert refused.value.field == "lines[0].unit_price"
    assert str(refused.value) == (
        f"lines[0].unit_price: 'MAT-1001' has a list price in EUR only and the order is in {currency}: "
        f"give the line's unit_price in {currency}"
    )
    # with its own prices the same order is taken, at those prices
    order = crm.place_order(new_order(customer, ("MAT-1001", "1", None, "1300"), ("MAT-1003", "1.5", None, "5")))
    assert (order.currency, order.total) == (currency, Decimal("1307.50") if currency == "USD" else Decimal("1308"))


def test_a_catalogue_price_in_the_orders_currency_is_taken(crm: CrmService) -> None:
    eur = crm.place_order(
        new_order(_customer(crm, "EUR"), ("MAT-1001", "1", None, None), ("MAT-1003", "1.5", None, None))
    )
    assert [line.unit_price for line in eur.lines] == [Decimal("1250.00"), Decimal("4.20")]
    assert eur.total == Decimal("1256.30")
    jpy = crm.place_order(new_order(_customer(crm, "JPY"), ("MAT-8103", "3", None, None)))
    assert (jpy.currency, jpy.total) == ("JPY", Decimal("30"))
