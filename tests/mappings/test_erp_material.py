"""erp_material: the ERP's MATERIAL -> canonical Product."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from canonical_model.errors import MappingError
from canonical_model.product import Product
from mappings import load_mapping

MAPPING = load_mapping("erp_material")


def _material(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "MATNR": "MAT-1001",
        "MAKTX": "Hydraulic pump HP-200",
        "MEINS": "ST",
        "NETPR": Decimal("1250.00"),
        "WAERS": "EUR",
        "LVORM": False,
        "CHSEQ": 12,
    }
    record.update(changes)
    return record


def test_material_to_product() -> None:
    product = Product.model_validate(MAPPING.to_canonical(_material()))
    assert product == Product(
        id="MAT-1001", name="Hydraulic pump HP-200", unit="H87", list_price=Decimal("1250.00"), currency="EUR"
    )
    assert isinstance(MAPPING.to_canonical(_material(NETPR="19.9"))["list_price"], Decimal)


@pytest.mark.parametrize(("lvorm", "active"), [(True, False), (False, True), ("X", False), (None, None)])
def test_active_is_not_flagged_for_deletion(lvorm: object, active: bool | None) -> None:
    assert MAPPING.to_canonical(_material(LVORM=lvorm)).get("active") == active


@pytest.mark.parametrize(("meins", "unit"), [("ST", "H87"), ("KG", "KGM"), ("M", "MTR"), ("L", "LTR"), ("PAK", "PK")])
def test_erp_units_map_back_to_un_ece_codes(meins: str, unit: str) -> None:
    assert MAPPING.to_canonical(_material(MEINS=meins))["unit"] == unit


def test_unknown_erp_unit() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPING.to_canonical(_material(MEINS="FASS"))
    assert (caught.value.path, caught.value.value) == ("unit", "FASS")
    assert "erp field MEINS" in str(caught.value)


def test_missing_price_is_refused() -> None:
    with pytest.raises(MappingError, match=r"list_price=None: required, but missing \[erp field NETPR\]"):
        MAPPING.to_canonical(_material(NETPR=None))


def test_product_back_to_material() -> None:
    product = Product(id="MAT-7", name="Seal kit", unit="PK", list_price=Decimal("9.5"), active=False)
    assert MAPPING.to_target(product) == {
        "MATNR": "MAT-7",
        "MAKTX": "Seal kit",
        "MEINS": "PAK",
        "NETPR": Decimal("9.50"),
        "WAERS": "EUR",
        "LVORM": True,
    }
