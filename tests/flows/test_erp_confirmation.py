"""Reading an accepted order's answer: each field bounded on its own, nothing raises."""

from __future__ import annotations

from decimal import Decimal

import pytest

from flows.erp_confirmation import confirmation_of, currency_code, document_number, stated_amount


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1250.125"), Decimal("1250.125")),  # issue case 5: kept at the ERP's precision
        ("0.16", Decimal("0.16")),
        (Decimal("1250.125000"), Decimal("1250.125000")),
        (Decimal("0.000001"), Decimal("0.000001")),
        (Decimal("999999999999999999.999999"), Decimal("999999999999999999.999999")),
        (7, Decimal(7)),
        (Decimal("0.0000001"), None),  # finer than 6 decimals
        (Decimal("1E+18"), None),  # 19 integer digits
        (Decimal("-1"), None),
        (Decimal("NaN"), None),
        (Decimal("Infinity"), None),
        ("abc", None),
        (None, None),
        (True, None),
        (1.5, None),  # a float is no amount an answer should carry
    ],
)
def test_stated_amount(value: object, expected: Decimal | None) -> None:
    assert stated_amount(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("0000004711", "0000004711"), (" 4711 ", "4711"), ("9" * 35, "9" * 35), ("9" * 36, None), ("", None)],
        *[("47\x0b11", None), ("47 11", None), (None, None), (4711, "4711")],
    ],
)
def test_document_number(value: object, expected: str | None) -> None:
    assert document_number(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("EUR", "EUR"), ("EUR ", "EUR"), ("eur", None), ("EURO", None), (None, None)]
)
def test_currency_code(value: object, expected: str | None) -> None:
    assert currency_code(value) == expected


def test_confirmation_of_never_raises() -> None:
    for answer in ({}, None, [], "x", {"VBELN": object(), "NETWR": object(), "WAERS": 3}):
        confirmed = confirmation_of("SO-1", answer)
        assert (confirmed.order_id, confirmed.erp_order_number, confirmed.net_value) == ("SO-1", None, None)
    confirmed = confirmation_of("SO-1", {"VBELN": "0000000001", "NETWR": Decimal("1250.125"), "WAERS": "EUR"})
    assert (confirmed.erp_order_number, confirmed.net_value, confirmed.currency) == (
        "0000000001",
        Decimal("1250.125"),
        "EUR",
    )
