"""erp_sales_order: canonical SalesOrder -> the ERP's CreateSalesOrder request, and fault paths back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from canonical_model.errors import MappingError
from canonical_model.order import SalesOrder
from mappings import load_mapping
from mappings.paths import FieldPath, read

MAPPING = load_mapping("erp_sales_order")
KUNNR = "0000100007"


def _order(*units: str) -> SalesOrder:
    units = units or ("H87", "KGM")
    return SalesOrder.model_validate(
        {
            "id": "ORD-2024-0001",
            "customer_id": "CRM-C-000042",
            "currency": "EUR",
            "order_date": "2024-05-17",
            "lines": [
                {"product_id": f"MAT-100{i + 1}", "quantity": Decimal(i + 2), "unit": unit, "unit_price": "12.5"}
                for i, unit in enumerate(units)
            ],
        }
    )


def test_order_to_create_sales_order_request() -> None:
    request = MAPPING.to_target(_order(), context={"kunnr": KUNNR})
    assert request == {
        "IDEMPOTENCY_KEY": "ORD-2024-0001",
        "HEADER": {"KUNNR": KUNNR, "AUART": "TA", "WAERS": "EUR", "BSTKD": "ORD-2024-0001", "AUDAT": date(2024, 5, 17)},
        "ITEMS": {
            "ITEM": [
                {"MATNR": "MAT-1001", "KWMENGE": Decimal("2.000"), "VRKME": "ST", "NETPR": Decimal("12.50")},
                {"MATNR": "MAT-1002", "KWMENGE": Decimal("3.000"), "VRKME": "KG", "NETPR": Decimal("12.50")},
            ]
        },
    }
    item = request["ITEMS"]["ITEM"][0]
    assert type(item["KWMENGE"]) is Decimal and type(item["NETPR"]) is Decimal
    assert type(request["HEADER"]["AUDAT"]) is date


def test_round_trip_gives_back_the_same_order() -> None:
    order = _order("H87", "MTR", "LTR", "PK")
    request = MAPPING.to_target(order, context={"kunnr": KUNNR})
    back = SalesOrder.model_validate(MAPPING.to_canonical(request, context={"customer_id": order.customer_id}))
    assert back == order
    assert back.total == order.total


def test_the_erp_customer_number_is_required_from_the_context() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPING.to_target(_order())
    assert caught.value.path == "context.kunnr"
    assert "HEADER.KUNNR" in str(caught.value)


def test_unknown_unit_on_the_second_line() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPING.to_target(_order("H87", "XYZ"), context={"kunnr": KUNNR})
    error = caught.value
    assert "lines[1].unit" in str(error) and "'XYZ'" in str(error)
    assert (error.path, error.value, error.mapping) == ("lines[1].unit", "XYZ", "erp_sales_order")
    assert "erp field ITEMS.ITEM[1].VRKME" in error.reason


def test_unknown_unit_on_the_way_back_keeps_the_index() -> None:
    request = MAPPING.to_target(_order("H87", "KGM", "MTR"), context={"kunnr": KUNNR})
    request["ITEMS"]["ITEM"][2]["VRKME"] = "FASS"
    with pytest.raises(MappingError) as caught:
        MAPPING.to_canonical(request, context={"customer_id": "C"})
    assert (caught.value.path, caught.value.value) == ("lines[2].unit", "FASS")
    assert "ITEMS.ITEM[2].VRKME" in str(caught.value)


def test_line_dicts_get_the_default_unit_and_are_checked() -> None:
    data = _order().model_dump()
    del data["lines"][0]["unit"]
    assert MAPPING.to_target(data, context={"kunnr": KUNNR})["ITEMS"]["ITEM"][0]["VRKME"] == "ST"
    data["lines"][1]["quantity"] = "1.2345"
    with pytest.raises(MappingError, match=r"lines\[1\].quantity='1.2345': more than 3 decimal places"):
        MAPPING.to_target(data, context={"kunnr": KUNNR})
    data["lines"] = []
    with pytest.raises(MappingError, match="lines=None: required, but missing"):
        MAPPING.to_target(data, context={"kunnr": KUNNR})


@pytest.mark.parametrize(
    ("system_path", "canonical_path"),
    [
        ("ITEMS.ITEM[1].MATNR", "lines[1].product_id"),
        ("ITEMS.ITEM[0].VRKME", "lines[0].unit"),
        ("ITEMS.ITEM[3].KWMENGE", "lines[3].quantity"),
        ("ITEMS.ITEM[2]", "lines[2]"),
        ("HEADER.WAERS", "currency"),
        ("HEADER.AUDAT", "order_date"),
        ("HEADER.BSTKD", "id"),
        ("IDEMPOTENCY_KEY", "id"),
        ("HEADER.KUNNR", None),
        ("HEADER.AUART", None),
        ("ITEMS.ITEM[1].POSNR", None),
        ("HEADER", None),
        ("not a path", None),
    ],
)
def test_canonical_path(system_path: str, canonical_path: str | None) -> None:
    assert MAPPING.canonical_path(system_path) == canonical_path


def _leaves(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [leaf for key, value in data.items() for leaf in _leaves(value, f"{prefix}.{key}" if prefix else key)]
    if isinstance(data, list):
        return [leaf for i, value in enumerate(data) for leaf in _leaves(value, f"{prefix}[{i}]")]
    return [prefix]


def test_every_request_field_points_back_at_the_canonical_value_it_came_from() -> None:
    order = _order("H87", "PK")
    request = MAPPING.to_target(order, context={"kunnr": KUNNR})
    canonical = order.model_dump()
    pointed = {}
    for leaf in _leaves(request):
        path = MAPPING.canonical_path(leaf)
        if path is not None:
            pointed[leaf] = read(canonical, FieldPath.parse(path))
    assert pointed["ITEMS.ITEM[1].MATNR"] == "MAT-1002"
    assert pointed["ITEMS.ITEM[1].VRKME"] == "PK"
    assert pointed["HEADER.AUDAT"] == date(2024, 5, 17)
    assert set(_leaves(request)) - set(pointed) == {"HEADER.KUNNR", "HEADER.AUART"}
