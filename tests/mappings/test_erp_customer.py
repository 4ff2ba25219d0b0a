"""erp_customer: canonical Customer <-> the ERP's CUSTOMER (docs/erp-service.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from canonical_model.errors import MappingError
from canonical_model.party import Address, Customer
from mappings import load_mapping

MAPPING = load_mapping("erp_customer")


def _customer(**changes: Any) -> Customer:
    data: dict[str, Any] = {
        "id": "CRM-C-000042",
        "name": "Müller Maschinenbau GmbH",
        "tax_id": "DE811907980",
        "email": "einkauf@mueller.example",
        "phone": "+49 30 1234567",
        "currency": "EUR",
        "credit_limit": Decimal("50000"),
        "payment_terms_days": 45,
        "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
    }
    data.update(changes)
    return Customer.model_validate(data)


def _erp_record(**changes: Any) -> dict[str, Any]:
    """A CUSTOMER as the ERP answers it: its own number, change sequence, empty optionals."""
    record: dict[str, Any] = {
        "KUNNR": "0000100007",
        "EXTREF": "CRM-C-000042",
        "NAME1": "Lyon Hydraulique SA",
        "STCD1": None,
        "STRAS": "12 rue de la République",
        "ORT01": "Lyon",
        "PSTLZ": "69002",
        "LAND1": "FRA",
        "SMTP_ADDR": "",
        "TELF1": None,
        "WAERS": "EUR",
        "KLIMK": Decimal("2000.00"),
        "ZTERM": "NT30",
        "CHSEQ": 117,
    }
    record.update(changes)
    return record


def test_customer_to_erp_fields_and_types() -> None:
    assert MAPPING.to_target(_customer()) == {
        "EXTREF": "CRM-C-000042",
        "NAME1": "Müller Maschinenbau GmbH",
        "STCD1": "DE811907980",
        "STRAS": "Hauptstr. 1",
        "ORT01": "Berlin",
        "PSTLZ": "10115",
        "LAND1": "DEU",
        "SMTP_ADDR": "einkauf@mueller.example",
        "TELF1": "+49 30 1234567",
        "WAERS": "EUR",
        "KLIMK": Decimal("50000.00"),
        "ZTERM": "NT45",
        "VERSION": 1,
    }
    klimk = MAPPING.to_target(_customer())["KLIMK"]
    assert isinstance(klimk, Decimal) and klimk.as_tuple().exponent == -2


def test_kunnr_only_when_the_context_gives_it() -> None:
    assert "KUNNR" not in MAPPING.to_target(_customer())
    assert MAPPING.to_target(_customer(), context={"kunnr": "0000100007"})["KUNNR"] == "0000100007"


def test_absent_optional_values_are_left_out_not_sent_empty() -> None:
    target = MAPPING.to_target(_customer(tax_id=None, email=None, phone=None))
    assert not {"STCD1", "SMTP_ADDR", "TELF1"} & set(target)


def test_only_the_first_address_goes_to_the_erp() -> None:
    second = {"kind": "shipping", "street": "Via Roma 3", "city": "Milano", "postal_code": "20121", "country": "IT"}
    target = MAPPING.to_target(_customer(addresses=[*_customer().model_dump()["addresses"], second]))
    assert (target["ORT01"], target["LAND1"]) == ("Berlin", "DEU")


def test_round_trip_gives_back_the_same_customer() -> None:
    customer = _customer()
    back = Customer.model_validate(MAPPING.to_canonical(MAPPING.to_target(customer)))
    assert back == customer


def test_erp_customer_to_canonical_validates_with_one_billing_address() -> None:
    customer = Customer.model_validate(MAPPING.to_canonical(_erp_record()))
    assert customer.id == "CRM-C-000042"
    assert customer.addresses == [
        Address(kind="billing", street="12 rue de la République", city="Lyon", postal_code="69002", country="FR")
    ]
    assert (customer.credit_limit, customer.payment_terms_days, customer.email, customer.tax_id) == (
        Decimal("2000.00"),
        30,
        None,
        None,
    )


def test_the_context_id_wins_and_serves_customers_born_in_the_erp() -> None:
    assert MAPPING.to_canonical(_erp_record(), context={"id": "CRM-C-7"})["id"] == "CRM-C-7"
    assert MAPPING.to_canonical(_erp_record(EXTREF=None), context={"id": "CRM-C-7"})["id"] == "CRM-C-7"
    with pytest.raises(MappingError) as caught:
        MAPPING.to_canonical(_erp_record(EXTREF=""))
    assert caught.value.path == "id"
    assert "EXTREF" in str(caught.value) and "'id'" in str(caught.value)


def test_unknown_country_names_the_canonical_path_and_the_value() -> None:
    customer = _customer(addresses=[{"street": "x", "city": "y", "postal_code": "1", "country": "XK"}])
    with pytest.raises(MappingError) as caught:
        MAPPING.to_target(customer)
    error = caught.value
    assert "addresses[0].country" in str(error) and "'XK'" in str(error)
    assert (error.path, error.value, error.mapping) == ("addresses[0].country", "XK", "erp_customer")
    assert "LAND1" in error.reason


def test_unknown_erp_country_on_the_way_back_names_both_fields() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPING.to_canonical(_erp_record(LAND1="XXK"))
    assert (caught.value.path, caught.value.value) == ("addresses[0].country", "XXK")
    assert "erp field LAND1" in str(caught.value)


def test_payment_terms_without_an_erp_key() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPING.to_target(_customer(payment_terms_days=21))
    assert (caught.value.path, caught.value.value) == ("payment_terms_days", 21)


def test_a_dict_bypassing_the_model_is_still_checked() -> None:
    data = _customer().model_dump()
    data["name"] = "N" * 36
    with pytest.raises(MappingError, match=r"name='N+': longer than 35 characters \[erp field NAME1\]"):
        MAPPING.to_target(data)
    data = _customer().model_dump()
    data["credit_limit"] = "100.005"
    with pytest.raises(MappingError, match=r"credit_limit='100.005': more than 2 decimal places"):
        MAPPING.to_target(data)
    del data["addresses"]
    with pytest.raises(MappingError, match=r"addresses\[0\].street=None: required, but missing"):
        MAPPING.to_target(data)


def test_another_model_is_refused() -> None:
    from canonical_model.product import Product

    with pytest.raises(TypeError, match="maps Customer, not Product"):
        MAPPING.to_target(Product(id="M", name="n", list_price=Decimal(1)))


@pytest.mark.parametrize(
    ("system_path", "canonical_path"),
    [
        ("CUSTOMER.LAND1", "addresses[0].country"),
        ("LAND1", "addresses[0].country"),
        ("CUSTOMER.NAME1", "name"),
        ("ZTERM", "payment_terms_days"),
        ("CUSTOMER.KUNNR", None),
        ("CHSEQ", None),
        ("CUSTOMER", None),
    ],
)
def test_canonical_path(system_path: str, canonical_path: str | None) -> None:
    assert MAPPING.canonical_path(system_path) == canonical_path
