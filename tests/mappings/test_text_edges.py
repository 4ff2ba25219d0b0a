"""Text at the mapping: XML 1.0 refused with the canonical path, fixed-width padding trimmed."""

from __future__ import annotations

import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical_model.errors import MappingError
from canonical_model.order import SalesOrder
from canonical_model.party import Customer
from canonical_model.product import Product
from mappings import Catalog, MappingDefinitionError, load_mapping


def _customer(name: str = "Nordlicht\x0bTechnik GmbH") -> Customer:
    return Customer.model_validate(
        {
            "id": "CUST-1",
            "name": name,
            "addresses": [{"street": "Hafenstr. 5", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
        }
    )


def test_a_customer_name_xml_cannot_carry_is_refused_with_its_canonical_path() -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping("erp_customer").to_target(_customer())
    error = caught.value
    assert (error.path, error.value) == ("name", "Nordlicht\x0bTechnik GmbH")
    assert "U+000B at position 9, which XML 1.0 cannot carry [erp field NAME1]" in error.reason
    assert "name='Nordlicht\\x0bTechnik GmbH'" in str(error)


def test_an_order_line_value_xml_cannot_carry_names_the_line() -> None:
    order = SalesOrder.model_validate(
        {
            "id": "SO-1",
            "customer_id": "CUST-1",
            "currency": "EUR",
            "order_date": date(2026, 11, 30),
            "lines": [
                {"product_id": "MAT-1001", "quantity": "1", "unit": "H87", "unit_price": "1.00"},
                {"product_id": "MAT-\x001002", "quantity": "1", "unit": "H87", "unit_price": "1.00"},
            ],
        }
    )
    with pytest.raises(MappingError) as caught:
        load_mapping("erp_sales_order").to_target(order, context={"kunnr": "0000100001"})
    assert caught.value.path == "lines[1].product_id"
    assert "[erp field ITEMS.ITEM[1].MATNR]" in caught.value.reason


def test_tabs_and_newlines_xml_can_carry_pass_the_mapping() -> None:
    record = load_mapping("erp_customer").to_target(_customer("Nordlicht\tTechnik"))
    assert record["NAME1"] == "Nordlicht\tTechnik"


def test_fixed_width_codes_from_the_erp_are_trimmed() -> None:
    material: dict[str, Any] = {
        "MATNR": "MAT-7002  ",
        "MAKTX": "Copper granulate                        ",
        "MEINS": "KG ",
        "NETPR": Decimal("11.75"),
        "WAERS": "EUR",
        "LVORM": None,
    }
    product = Product.model_validate(load_mapping("erp_material").to_canonical(material))
    assert (product.id, product.name, product.unit) == ("MAT-7002", "Copper granulate", "KGM")

    customer = load_mapping("erp_customer").to_canonical(
        {
            "EXTREF": "CUST-1 ",
            "NAME1": "Lyon Hydraulique SA ",
            "STRAS": "12 rue X",
            "ORT01": "Lyon",
            "PSTLZ": "69002     ",
            "LAND1": "FRA",
            "WAERS": "EUR ",
            "ZTERM": "NT30",
        }
    )
    assert customer["addresses"][0] == {
        "kind": "billing",
        "street": "12 rue X",
        "city": "Lyon",
        "postal_code": "69002",
        "country": "FR",
    }
    assert (customer["id"], customer["name"], customer["currency"]) == ("CUST-1", "Lyon Hydraulique SA", "EUR")


def test_a_field_of_blanks_only_is_absent() -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping("erp_material").to_canonical({"MATNR": "   ", "MAKTX": "x", "NETPR": "1.00"})
    assert (caught.value.path, caught.value.value) == ("id", None)


SMALL = """
    model: Customer
    system: crm2
    {options}
    fields:
      - canonical: id
        system: ID
      - canonical: name
        system: NAME
"""


def _compile(root: Path, options: str) -> Any:
    (root / "definitions" / "crm2_thing.yaml").write_text(textwrap.dedent(SMALL.format(options=options)).lstrip())
    return Catalog(root / "definitions", root / "value_maps").mapping("crm2_thing")


def test_a_json_system_keeps_what_json_can_carry_and_padding_is_only_trimmed_when_declared(catalog_dir: Path) -> None:
    mapping = _compile(catalog_dir, "system_format: json")
    assert mapping.to_target(_customer())["NAME"] == "Nordlicht\x0bTechnik GmbH"
    assert mapping.to_canonical({"ID": "C-1 ", "NAME": " x "}) == {"id": "C-1 ", "name": " x "}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("system_format: soap", "system_format: must be one of xml, json, not 'soap'"),
        ("fixed_width: yes please", "fixed_width: must be true or false"),
    ],
)
def test_the_text_options_are_checked(catalog_dir: Path, options: str, expected: str) -> None:
    with pytest.raises(MappingDefinitionError) as caught:
        _compile(catalog_dir, options)
    assert expected in str(caught.value)
