"""Money as a class: ISO 4217 minor units and commercial (half-up) rounding, in the model and the ERP alike."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, localcontext

import pytest
from pydantic import ValidationError

from canonical_model.money import (
    MAX_MINOR_UNITS,
    MINOR_UNITS,
    UnknownCurrency,
    fits_currency,
    line_amount,
    minor_units,
    round_money,
)
from canonical_model.order import OrderLine, SalesOrder


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        *[("JPY", 0), ("KRW", 0), ("CLP", 0), ("EUR", 2), ("USD", 2), ("HUF", 2)],
        *[("KWD", 3), ("BHD", 3), ("OMR", 3), ("JOD", 3), ("TND", 3), ("IQD", 3), ("LYD", 3)],
    ],
)
def test_minor_units_follow_iso_4217(currency: str, places: int) -> None:
    assert minor_units(currency) == places


def test_every_currency_fits_the_crm_columns() -> None:
    assert max(MINOR_UNITS.values()) == MAX_MINOR_UNITS
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)


@pytest.mark.parametrize("currency", ["XXX", "XAU", "CLF", "EU", "eur", ""])
def test_codes_without_usable_minor_units_are_refused(currency: str) -> None:
    with pytest.raises(UnknownCurrency):
        minor_units(currency)


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        # the .5 cases: half-up (commercial), where half-even would go down to the even digit
        ("0.125", "EUR", "0.13"),
        ("0.025", "EUR", "0.03"),
        ("0.135", "EUR", "0.14"),
        ("2.5", "JPY", "3"),
        ("0.5", "JPY", "1"),
        ("1.5", "JPY", "2"),
        ("0.0125", "KWD", "0.013"),
        ("0.0005", "BHD", "0.001"),
        # below half goes down, whatever the parity
        ("0.124999", "EUR", "0.12"),
        ("2.4999", "JPY", "2"),
        ("1.0004", "OMR", "1.000"),
        # exact values keep their value and get the currency's number of decimals
        ("10", "EUR", "10.00"),
        ("10.00", "JPY", "10"),
        ("7.1", "KWD", "7.100"),
    ],
)
def test_round_money_is_half_up_to_the_currency_precision(amount: str, currency: str, rounded: str) -> None:
    result = round_money(Decimal(amount), currency)
    assert result == Decimal(rounded)
    assert result.as_tuple().exponent == -minor_units(currency), "exactly the currency's number of decimals"


def test_line_amounts_are_exact_before_rounding_even_past_28_digits() -> None:
    # 13-digit quantity x 18-digit price: the default decimal context (28 digits) would round the product first
    quantity, price = Decimal("9308397299.875"), Decimal("537666554764512.283")
    with localcontext(prec=100):
        assert quantity * price == Decimal("5004813906603079951548471.864625")
    assert quantity * price == Decimal("5004813906603079951548471.865"), "the default context rounds to a half"
    assert line_amount(quantity, price, "EUR") == Decimal("5004813906603079951548471.86")


def test_fits_currency() -> None:
    assert fits_currency(Decimal("10"), "JPY")
    assert fits_currency(Decimal("10.000"), "JPY"), "trailing zeros are no extra precision"
    assert not fits_currency(Decimal("10.5"), "JPY")
    assert fits_currency(Decimal("0.125"), "KWD")
    assert not fits_currency(Decimal("0.125"), "EUR")
    assert not fits_currency(Decimal("NaN"), "EUR")


def _order(currency: str, *lines: tuple[str, str]) -> SalesOrder:
    return SalesOrder(
        id="SO-1",
        customer_id="CUST-1",
        currency=currency,
        order_date=date(2026, 11, 30),
        lines=[
            OrderLine(product_id=f"P{i}", quantity=Decimal(q), unit="KGM", unit_price=Decimal(p))
            for i, (q, p) in enumerate(lines)
        ],
    )


def test_issue_case_4_lines_round_half_up_then_sum_like_the_erp() -> None:
    order = _order("EUR", ("2.5", "0.05"), ("0.5", "0.05"))
    assert [line.net_amount for line in order.lines] == [Decimal("0.13"), Decimal("0.03")]
    assert order.total == Decimal("0.16")
    again = SalesOrder.model_validate_json(order.model_dump_json())
    assert again.total == Decimal("0.16"), "a serialised order reads back with the same amounts"


@pytest.mark.parametrize(
    ("currency", "lines", "total"),
    [
        ("JPY", [("2.5", "11"), ("0.5", "11")], "34"),  # 27.5 -> 28, 5.5 -> 6
        ("KWD", [("2.5", "0.005"), ("0.5", "0.005")], "0.016"),  # 0.0125 -> 0.013, 0.0025 -> 0.003
        ("EUR", [("3", "0.333")], None),  # a EUR price with 3 decimals: refused (below)
    ],
)
def test_totals_across_currencies(currency: str, lines: list[tuple[str, str]], total: str | None) -> None:
    if total is None:
        with pytest.raises(ValidationError, match=r"lines\[0\]\.unit_price 0.333 has more decimals than EUR"):
            _order(currency, *lines)
        return
    order = _order(currency, *lines)
    assert order.total == Decimal(total)
    assert order.total.as_tuple().exponent == -minor_units(currency)


def test_a_jpy_unit_price_with_decimals_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match=r"lines\[1\]\.unit_price 10.5 has more decimals than JPY has \(0\)"):
        _order("JPY", ("1", "10"), ("1", "10.5"))


def test_an_unknown_currency_is_refused() -> None:
    with pytest.raises(ValidationError, match="XXX is not an ISO 4217 currency"):
        _order("XXX", ("1", "10"))


def test_an_amount_stated_in_exponent_form_is_written_in_plain_notation_and_read_back() -> None:
    """Another system's ``1E3`` is 1000: we write it as ``1000`` (str(Decimal) would give ``1E+3``,
    which our own plain-notation rule refuses on the way back in)."""
    from canonical_model.order import OrderConfirmed

    confirmed = OrderConfirmed(order_id="SO-1", erp_order_number="1", net_value=Decimal("1E+3"), currency="EUR")
    written = confirmed.model_dump_json()
    assert '"net_value":"1000"' in written
    assert OrderConfirmed.model_validate_json(written).net_value == Decimal(1000)


@pytest.mark.parametrize("price", ["999999999999999.99", "1000000000000.000"])
def test_an_amount_beyond_what_every_database_keeps_exactly_is_refused(price: str) -> None:
    from pydantic import ValidationError

    from canonical_model.order import SalesOrder

    with pytest.raises(ValidationError):
        SalesOrder.model_validate(
            {
                "id": "SO-1",
                "customer_id": "C-1",
                "order_date": "2026-01-01",
                "lines": [{"product_id": "P", "quantity": "1", "unit_price": price}],
            }
        )


def test_a_total_beyond_an_amount_is_refused_although_each_line_fits() -> None:
    from pydantic import ValidationError

    from canonical_model.order import SalesOrder

    line = {"product_id": "P", "quantity": "9999999999.999", "unit_price": "999999.99"}
    with pytest.raises(ValidationError, match="over the largest amount"):
        SalesOrder.model_validate({"id": "SO-1", "customer_id": "C-1", "order_date": "2026-01-01", "lines": [line]})
