"""The CRM's input refuses text no back office can take, naming the field; it keeps text in NFC."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from crm_core.schemas import NewCustomer, NewOrder
from crm_core.services import CrmService

BAD_NAME = "Nordlicht\x0bTechnik GmbH"  # issue 6, case 2


def _customer(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Nordlicht Technik GmbH",
        "addresses": [{"street": "Hafenstr. 5", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
        "contacts": [{"name": "Jens Hansen", "role": "Einkauf"}],
    }
    data.update(changes)
    return data


def _refusal(model: type[NewCustomer] | type[NewOrder], data: dict[str, Any]) -> tuple[tuple[int | str, ...], str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    [error] = caught.value.errors()
    return error["loc"], error["msg"]


def test_the_crm_refuses_a_customer_name_with_a_vertical_tab_naming_name() -> None:
    loc, message = _refusal(NewCustomer, _customer(name=BAD_NAME))
    assert loc == ("name",)
    assert "U+000B at position 9" in message
    assert "'Nordlicht\\x0bTechnik GmbH'" in message, "the value is shown with the character escaped"


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"tax_id": "DE\x00811907980"}, ("tax_id",)),
        ({"phone": "+49 431\n123"}, ("phone",)),
        (
            {"addresses": [{"street": "Hafenstr.\t5", "city": "Kiel", "postal_code": "24103", "country": "DE"}]},
            ("addresses", 0, "street"),
        ),
        (
            {"addresses": [{"street": "Hafenstr. 5", "city": "Kiel\x85", "postal_code": "24103", "country": "DE"}]},
            ("addresses", 0, "city"),
        ),
        ({"contacts": [{"name": "Jens", "role": "Ein\x7fkauf"}]}, ("contacts", 0, "role")),
        ({"contacts": [{"name": "Jens\x1b[31m"}]}, ("contacts", 0, "name")),
    ],
)
def test_control_characters_are_refused_in_every_text_field(
    changes: dict[str, Any], where: tuple[int | str, ...]
) -> None:
    loc, message = _refusal(NewCustomer, _customer(**changes))
    assert loc == where
    assert "control character" in message


def test_an_order_refuses_control_characters_too() -> None:
    order = {"customer_id": "CUST-1", "lines": [{"product_id": "MAT-1001\x00", "quantity": "1"}]}
    loc, _ = _refusal(NewOrder, order)
    assert loc == ("lines", 0, "product_id")
    loc, _ = _refusal(NewOrder, {**order, "customer_id": "CUST\x1b-1", "lines": [{"product_id": "M", "quantity": 1}]})
    assert loc == ("customer_id",)


def test_the_crm_keeps_text_in_nfc(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    created = crm.create_customer(
        NewCustomer.model_validate(
            _customer(
                name="Mu\u0308ller Maschinenbau GmbH",
                addresses=[{"street": "Hauptstr. 1", "city": "Ko\u0308ln", "postal_code": "50667", "country": "DE"}],
            )
        )
    )
    stored = crm.get_customer(created.id)
    assert stored.name == "M\u00fcller Maschinenbau GmbH"
    assert stored.addresses[0].city == "K\u00f6ln"


def test_canonical_addresses_and_contacts_given_as_objects_are_checked_alike() -> None:
    from canonical_model.party import Address, Contact

    good = NewCustomer(
        name="Nordlicht Technik GmbH",
        addresses=[Address(street="Hafenstr. 5", city="Kiel", postal_code="24103", country="DE")],  # type: ignore[list-item]
        contacts=[Contact(name="Jens Hansen")],  # type: ignore[list-item]
    )
    assert good.addresses[0].city == "Kiel" and good.contacts[0].name == "Jens Hansen"
    bad = Address(street="Hafenstr.\x0b5", city="Kiel", postal_code="24103", country="DE")
    with pytest.raises(ValidationError) as caught:
        NewCustomer(name="Nordlicht Technik GmbH", addresses=[bad])  # type: ignore[list-item]
    assert caught.value.errors()[0]["loc"] == ("addresses", 0, "street")
