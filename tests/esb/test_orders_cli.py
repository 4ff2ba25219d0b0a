"""`esb orders list`: what became of each order, as a table or as JSON, filtered by status."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from canonical_model import OrderConfirmed, OrderRejected
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.models import OrderRow
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService
from esb.cli import cli
from esb.orders import render_orders


@pytest.fixture
def orders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Four orders, one per status; the confirmed one with an ERP net value that differs."""
    for name in ("ESB_CONFIG", "ESB_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ESB_DATA_DIR", str(tmp_path))
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    crm = CrmService(sessions)
    customer = crm.create_customer(
        NewCustomer.model_validate(
            {
                "name": "Nordlicht Technik GmbH",
                "addresses": [{"street": "A 1", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
            }
        )
    )
    line = NewOrderLine(product_id="MAT-1", quantity=Decimal("2.5"), unit="KGM", unit_price=Decimal("1000.00"))
    ids = [crm.place_order(NewOrder(customer_id=customer.id, lines=[line])).id for _ in range(4)]
    confirmed, rejected, failed, _placed = ids
    crm.confirm_order(
        OrderConfirmed(order_id=confirmed, erp_order_number="4711", net_value=Decimal("2500.01"), currency="EUR"),
        consumer="test",
        message_id="m-1",
    )
    crm.reject_order(
        OrderRejected(order_id=rejected, reason="over the credit limit", code="CREDIT_BLOCK"),
        consumer="test",
        message_id="m-2",
    )
    crm.mark_order_failed(failed, "delivery limit exceeded; last error: erp: HTTP 503 [in esb.erp.order_placed]")
    with sessions() as session, session.begin():  # the flag is set by the confirmation (money's part)
        session.execute(update(OrderRow).where(OrderRow.id == confirmed).values(net_value_mismatch=True))
    engine.dispose()
    return ids


def test_the_table_shows_status_erp_order_or_reason_and_the_mismatch_marker(orders: list[str]) -> None:
    confirmed, rejected, failed, placed = orders
    result = CliRunner().invoke(cli, ["orders", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["order", "customer", "total", "status", "ERP", "order", "/", "reason"]
    rows = {line.split()[1] if line.startswith("!") else line.split()[0]: line for line in lines[1:5]}
    assert rows[confirmed].startswith("!") and "confirmed" in rows[confirmed] and rows[confirmed].endswith("4711")
    assert "2,500.00 EUR" in rows[confirmed] and "Nordlicht Technik GmbH" in rows[confirmed]
    assert rows[rejected].endswith("CREDIT_BLOCK: over the credit limit")
    assert "failed" in rows[failed] and "delivery limit exceeded; last error: erp: HTTP 503" in rows[failed]
    assert rows[placed].rstrip().endswith("placed")
    assert lines[5] == "! the ERP's net value differs from the CRM's total"


def test_status_limit_and_json(orders: list[str]) -> None:
    confirmed, _rejected, failed, _placed = orders
    result = CliRunner().invoke(cli, ["orders", "list", "--status", "failed", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(o["id"], o["status"]) for o in listed] == [(failed, "failed")]
    assert listed[0]["failure_reason"].startswith("delivery limit exceeded")
    newest = json.loads(CliRunner().invoke(cli, ["orders", "list", "--limit", "2", "--format", "json"]).output)
    assert [o["id"] for o in newest] == orders[2:]
    confirmed_json = json.loads(
        CliRunner().invoke(cli, ["orders", "list", "--status", "confirmed", "--format", "json"]).output
    )
    assert confirmed_json[0]["net_value_mismatch"] is True and confirmed_json[0]["id"] == confirmed
    assert render_orders([]).endswith("(no orders)")
    refused = CliRunner().invoke(cli, ["orders", "list", "--status", "stuck"])
    assert refused.exit_code == 2 and "'stuck' is not one of" in refused.output


def test_a_database_without_the_crm_schema_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESB_CONFIG", raising=False)
    monkeypatch.setenv("ESB_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(cli, ["orders", "list"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot read orders from sqlite:///") and "esb migrate" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
