"""Money end to end (issue 6, cases 4 and 5): the CRM, the canonical model and the ERP agree on amounts,
and an order the ERP accepted is confirmed in the CRM whatever is off in the ERP's answer.

The reference ERP runs in its own process over HTTP; case 5 uses its wrong-answer switch
(``/admin/wrong-answers``), since it never answers NETWR with three decimals by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from crm_core.schemas import NewCustomer, OrderView
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order, render_table
from esb.worker import Worker


@pytest.fixture(scope="module")
def erp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(db_path=tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, erp_server: ErpServerProcess, unique_name: str) -> Iterator[Application]:
    erp_server.set_wrong_answers({})
    erp_server.reset_stats()
    settings = EsbSettings(
        data_dir=tmp_path,
        namespace=unique_name,
        erp={"url": erp_server.url},  # type: ignore[arg-type]
        worker={"material_sync_seconds": 0},  # type: ignore[arg-type]
    )
    with Application(settings) as application:
        yield application
    erp_server.set_wrong_answers({})


def _customer(app: Application) -> str:
    new = NewCustomer.model_validate(
        {
            "name": "Kupfer & Fett KG",
            "credit_limit": "10000",
            "addresses": [{"street": "Hafenstr. 2", "city": "Hamburg", "postal_code": "20457", "country": "DE"}],
        }
    )
    return app.crm.create_customer(new).id


def _settled(app: Application, order_id: str, timeout: float = 30.0) -> OrderView:
    deadline = time.monotonic() + timeout
    while app.crm.get_order(order_id).status == OrderStatus.PLACED and time.monotonic() < deadline:
        time.sleep(0.05)
    return app.crm.get_order(order_id)


def test_issue_case_4_crm_erp_and_invoice_agree_on_half_cent_lines(
    app: Application, erp_server: ErpServerProcess
) -> None:
    order = app.crm.place_order(
        new_order(_customer(app), ("MAT-1006", "2.5", "KGM", "0.05"), ("MAT-1010", "0.5", "KGM", "0.05"))
    )
    assert [line.net_amount for line in order.lines] == [Decimal("0.13"), Decimal("0.03")]
    assert order.total == Decimal("0.16")
    with capture_logs() as logs, Worker(app):
        view = _settled(app, order.id)
    assert view.status == OrderStatus.CONFIRMED, view
    assert view.total == Decimal("0.16")
    assert view.erp_net_value == Decimal("0.16")
    assert view.net_value_mismatch is False
    assert not [entry for entry in logs if entry["log_level"] == "warning"]

    erp_order = app.erp.get_sales_order(view.erp_order_number or "")
    assert [item["NETWR"] for item in erp_order["ITEMS"]["ITEM"]] == [Decimal("0.13"), Decimal("0.03")]
    assert erp_order["NETWR"] == Decimal("0.16")
    invoices = [i for i in app.erp.invoices_changed_since(0, 500).items if i["AUBEL"] == view.erp_order_number]
    assert [invoice["NETWR"] for invoice in invoices] == [Decimal("0.16")]
    assert erp_server.calls("CreateSalesOrder") == 1


def test_issue_case_5_an_accepted_order_with_a_three_decimal_net_value_is_confirmed(
    app: Application, erp_server: ErpServerProcess
) -> None:
    erp_server.set_wrong_answers({"CreateSalesOrder": {"SALES_ORDER/NETWR": "1250.125"}})
    order = app.crm.place_order(new_order(_customer(app), ("MAT-1001", "1", "H87", "1250.00")))
    with capture_logs() as logs, Worker(app):
        view = _settled(app, order.id)
    assert view.status == OrderStatus.CONFIRMED, view
    assert view.erp_order_number
    assert view.erp_net_value == Decimal("1250.125")
    assert view.net_value_mismatch is True
    assert erp_server.calls("CreateSalesOrder") == 1, "no retry of an order the ERP accepted"
    assert app.transport.message_count(app.topology.dead_letter_queue) == 0
    warning = next(entry for entry in logs if entry["event"] == "ERP net value differs from the CRM total")
    assert warning["log_level"] == "warning"
    assert (warning["order_id"], warning["crm_total"], warning["erp_net_value"], warning["currency"]) == (
        order.id,
        "1250.00",
        "1250.125",
        "EUR",
    )
    assert "1,250.00 EUR != ERP 1,250.125" in render_table([view]), "the listing shows the difference"


def test_an_accepted_order_is_confirmed_whatever_else_is_off_in_the_answer(
    app: Application, erp_server: ErpServerProcess
) -> None:
    # a document number longer than any column, no currency, a negative value: the ERP still holds the order
    erp_server.set_wrong_answers(
        {"CreateSalesOrder": {"SALES_ORDER/VBELN": "9" * 40, "SALES_ORDER/WAERS": None, "SALES_ORDER/NETWR": "-1"}}
    )
    order = app.crm.place_order(new_order(_customer(app), ("MAT-1002", "2", "H87", "89.50")))
    with capture_logs() as logs, Worker(app):
        view = _settled(app, order.id)
    assert view.status == OrderStatus.CONFIRMED, view
    assert view.erp_order_number is None
    assert view.erp_net_value is None and view.net_value_mismatch is True
    assert erp_server.calls("CreateSalesOrder") == 1
    assert app.transport.message_count(app.topology.dead_letter_queue) == 0
    unusable = next(entry for entry in logs if entry["event"].startswith("the ERP accepted the order but"))
    assert (unusable["VBELN"], unusable["WAERS"], unusable["NETWR"]) == (repr("9" * 40), "None", "Decimal('-1')")


@pytest.mark.parametrize(
    ("rules", "stored"),
    [
        ({"SALES_ORDER/NETWR": "1,250.00"}, None),  # zeep cannot convert it: the answer is read by hand
        ({"SALES_ORDER/ITEMS/ITEM/NETWR": "1,5"}, Decimal("1250.00")),  # an item's value only
    ],
)
def test_an_accepted_order_whose_answer_holds_a_value_zeep_cannot_convert_is_confirmed(
    app: Application, erp_server: ErpServerProcess, rules: dict[str, str], stored: Decimal | None
) -> None:
    erp_server.set_wrong_answers({"CreateSalesOrder": rules})
    order = app.crm.place_order(new_order(_customer(app), ("MAT-1001", "1", "H87", "1250.00")))
    with capture_logs() as logs, Worker(app):
        view = _settled(app, order.id)
    assert view.status == OrderStatus.CONFIRMED, view
    assert view.erp_order_number
    assert view.erp_net_value == stored
    assert view.net_value_mismatch is (stored is None)
    assert erp_server.calls("CreateSalesOrder") == 1, "no retry of an order the ERP accepted"
    if stored is None:
        unusable = next(e for e in logs if e["event"].startswith("the ERP accepted the order but parts"))
        assert unusable["log_level"] == "warning" and unusable["NETWR"] == "'1,250.00'"
