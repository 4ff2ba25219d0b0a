"""Money in the CRM: amounts checked against their currency, the ERP's net value kept and compared."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from canonical_model import OrderConfirmed, OrderStatus
from crm_core import services
from crm_core.errors import InvalidRequest
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService


def _customer(crm: CrmService, currency: str = "EUR") -> str:
    new = NewCustomer.model_validate(
        {
            "name": "Money Tester GmbH",
            "currency": currency,
            "credit_limit": "5000",
            "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )
    return crm.create_customer(new).id


def _line(product: str, quantity: str, price: str) -> NewOrderLine:
    return NewOrderLine(product_id=product, quantity=Decimal(quantity), unit="KGM", unit_price=Decimal(price))


def test_issue_case_4_total_is_rounded_per_line_half_up(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    order = crm.place_order(
        NewOrder(customer_id=_customer(crm), lines=[_line("MAT-1006", "2.5", "0.05"), _line("MAT-1010", "0.5", "0.05")])
    )
    assert order.total == Decimal("0.16")
    assert crm.get_order(order.id).total == Decimal("0.16"), "stored the same way"
    assert crm.get_sales_order(order.id).total == Decimal("0.16")


def test_a_price_finer_than_its_currency_is_refused_with_the_field_named(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    yen = _customer(crm, "JPY")
    with pytest.raises(InvalidRequest, match=r"lines\[1\]\.unit_price: 10.5 has more decimals than JPY has \(0\)"):
        crm.place_order(NewOrder(customer_id=yen, lines=[_line("A", "1", "10"), _line("B", "1", "10.5")]))
    with pytest.raises(InvalidRequest, match=r"lines\[0\]\.unit_price: 0.125 has more decimals than EUR"):
        crm.place_order(NewOrder(customer_id=yen, currency="EUR", lines=[_line("A", "1", "0.125")]))
    with pytest.raises(InvalidRequest, match=r"currency: XXX is not an ISO 4217 currency"):
        crm.place_order(NewOrder(customer_id=yen, currency="XXX", lines=[_line("A", "1", "1")]))
    kwd = crm.place_order(NewOrder(customer_id=yen, currency="KWD", lines=[_line("A", "2.5", "0.125")]))
    assert kwd.total == Decimal("0.313"), "three decimals where the currency has them (0.3125 half-up)"
    assert crm.get_order(kwd.id).total == Decimal("0.313")


@pytest.mark.parametrize(
    ("net_value", "currency", "mismatch"),
    [
        (Decimal("0.16"), "EUR", False),
        (Decimal("0.160000"), "EUR", False),  # the same value at another precision
        (Decimal("0.14"), "EUR", True),
        (Decimal("0.165"), "EUR", True),  # case 5's kind: more decimals than the currency
        (Decimal("0.16"), "USD", True),
        (None, "EUR", True),  # the ERP stated no usable value
        (Decimal("0.16"), None, False),  # no currency stated: the value is compared
    ],
)
def test_net_value_differs(net_value: Decimal | None, currency: str | None, mismatch: bool) -> None:
    confirmed = OrderConfirmed(order_id="SO-1", net_value=net_value, currency=currency)
    assert services.net_value_differs(Decimal("0.16"), "EUR", confirmed) is mismatch


def test_confirmation_keeps_the_erp_net_value_and_flags_a_difference(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    customer = _customer(crm)
    cases = [
        (Decimal("0.160000"), "EUR", False),
        (Decimal("0.165"), "EUR", True),
        (None, None, True),
        (Decimal("123456789012.123456"), "EUR", True),  # 18 digits: kept exactly, SQLite included
    ]
    for number, (net_value, currency, mismatch) in enumerate(cases):
        order = crm.place_order(
            NewOrder(customer_id=customer, lines=[_line("MAT-1006", "2.5", "0.05"), _line("MAT-1010", "0.5", "0.05")])
        )
        confirmed = OrderConfirmed(order_id=order.id, erp_order_number="4711", net_value=net_value, currency=currency)
        with capture_logs() as logs:
            assert crm.confirm_order(confirmed, consumer="t", message_id=f"m{number}") is True
        view = crm.get_order(order.id)
        assert (view.status, view.erp_net_value, view.net_value_mismatch) == (
            OrderStatus.CONFIRMED,
            net_value,
            mismatch,
        )
        warnings = [entry for entry in logs if entry["log_level"] == "warning"]
        if not mismatch:
            assert warnings == []
            continue
        assert len(warnings) == 1
        assert (warnings[0]["order_id"], warnings[0]["crm_total"], warnings[0]["currency"]) == (order.id, "0.16", "EUR")
        assert warnings[0]["erp_net_value"] == (None if net_value is None else str(net_value))


def test_an_erp_number_longer_than_sap_and_a_three_decimal_value_are_stored(
    crm_sessions: sessionmaker[Session],
) -> None:
    crm = CrmService(crm_sessions)
    order = crm.place_order(NewOrder(customer_id=_customer(crm), lines=[_line("MAT-1001", "1", "1250.00")]))
    number = "SO-2026-000000000000000000000000001"  # 35 characters: the canonical limit
    confirmed = OrderConfirmed(order_id=order.id, erp_order_number=number, net_value=Decimal("1250.125"))
    assert crm.confirm_order(confirmed, consumer="t", message_id="m1") is True
    view = crm.get_order(order.id)
    assert (view.status, view.erp_order_number) == (OrderStatus.CONFIRMED, number)
    assert view.erp_net_value == Decimal("1250.125") and view.net_value_mismatch is True
