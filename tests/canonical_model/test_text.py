"""Text as a class: one Unicode form in the canonical model, what XML 1.0 and one-line fields can carry."""

from __future__ import annotations

from decimal import Decimal

import pytest

from canonical_model.party import Address, Contact, Customer
from canonical_model.product import Product
from canonical_model.text import clip, control_char, nfc, shown, xml_unsafe

DECOMPOSED = "Mu\u0308ller"  # u + combining diaeresis, as macOS file names and some keyboards send it
COMPOSED = "M\u00fcller"


def test_equal_text_compares_equal_whatever_its_unicode_form() -> None:
    assert DECOMPOSED != COMPOSED
    assert nfc(DECOMPOSED) == COMPOSED
    address = {"street": f"{DECOMPOSED}weg 1", "city": "Ko\u0308ln", "postal_code": "50667", "country": "DE"}
    customer = Customer(id="C-1", name=f"{DECOMPOSED} GmbH", addresses=[Address.model_validate(address)])
    assert customer.name == f"{COMPOSED} GmbH"
    assert customer.addresses[0].street == f"{COMPOSED}weg 1" and customer.addresses[0].city == "K\u00f6ln"
    assert Contact(name=DECOMPOSED).name == COMPOSED
    assert Product(id="MAT-1", name=DECOMPOSED, list_price=Decimal("1")).name == COMPOSED


def test_length_limits_count_the_normalised_text() -> None:
    # 35 characters once composed, 36 as sent: the ERP's NAME1 holds 35
    name = DECOMPOSED + "x" * 29
    assert len(name) == 36
    customer = Customer.model_validate(
        {"id": "C-1", "name": name, "addresses": [{"street": "A", "city": "B", "postal_code": "1", "country": "DE"}]}
    )
    assert len(customer.name) == 35


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("Nordlicht\x0bTechnik GmbH", 9),
        ("\x00", 0),
        ("a\x1fb", 1),
        ("lone \ud800 surrogate", 5),
        ("not a char \ufffe", 11),
        ("nor \uffff", 4),
    ],
)
def test_characters_xml_cannot_carry(text: str, position: int) -> None:
    found = xml_unsafe(text)
    assert found is not None and found[0] == position
    assert control_char(text) is not None


@pytest.mark.parametrize("text", ["tab\there", "line\nbreak", "cr\r", "del\x7f", "c1 \x85 next line", "\x9f"])
def test_xml_carries_these_but_a_one_line_field_takes_none_of_them(text: str) -> None:
    assert xml_unsafe(text) is None
    assert control_char(text) is not None


@pytest.mark.parametrize("text", ["Müller GmbH", "上海精密零件有限公司", "Zoë & Søn 🚀", "\u00a0no-break space"])
def test_ordinary_text_passes(text: str) -> None:
    assert xml_unsafe(text) is None and control_char(text) is None


def test_clip_and_shown_bound_what_goes_into_reasons_and_logs() -> None:
    assert clip("short", 10) == "short"
    assert clip("x" * 250, 200) == "x" * 200 + "...[+50 chars]"
    assert shown("Nordlicht\x0bTechnik GmbH") == "'Nordlicht\\x0bTechnik GmbH'"
    assert len(shown("y" * 10_000)) < 230
