"""Small value types shared by the business objects."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer

from canonical_model.text import nfc

CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
UnitCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}$", description="UN/ECE Recommendation 20 unit code")]


def _nfc(value: object) -> object:
    return nfc(value) if isinstance(value, str) else value


#: free text (names, addresses): normalised to NFC before any length check, so equal text compares equal
Text = Annotated[str, BeforeValidator(_nfc)]


def _plain_decimal(value: object) -> object:
    """Money and quantities from outside: a string in plain decimal notation (``-?digits[.digits]``,
    what the models write and the JSON Schema says), an integer or a ``Decimal``; not a float with a
    fraction (binary floating point cannot carry an exact amount), not exponent notation, spaces,
    ``_`` or a ``+`` that ``Decimal()`` would take but the contract does not. Raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError("not a number in plain decimal notation (e.g. 1234.5)")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("a floating-point number cannot carry an exact amount: send it as a decimal string")
    return value


_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
PlainDecimal = BeforeValidator(_plain_decimal)


#: written the way it is read: plain notation, never ``1E+3`` (what ``str(Decimal)`` gives for a value
#: another system sent in exponent form), so that every amount we write is one we accept again
def plain_notation(value: Decimal) -> str:
    """``value`` as text in plain decimal notation (``1000`` for ``Decimal("1E+3")``)."""
    return format(value, "f")


PlainNotation = PlainSerializer(plain_notation, return_type=str, when_used="json")
#: significant digits an amount may have: what the CRM's columns keep exactly on every database (SQLite
#: stores NUMERIC as an 8-byte float, exact to 15 significant digits); SAP's CURR fields have 15 too
AMOUNT_DIGITS = 15

#: an amount in a currency: at most 3 decimals (the most ISO 4217 minor units of any currency we hold);
#: whether it fits its own currency's precision is checked where the currency is known (canonical_model.money)
Money = Annotated[Decimal, Field(ge=0, max_digits=AMOUNT_DIGITS, decimal_places=3), PlainDecimal, PlainNotation]
#: an amount as another system stated it, at that system's precision (which may exceed the currency's):
#: finite, not negative, at most 12 integer digits and 6 decimals (the CRM keeps its exact text); a value
#: beyond that is no usable amount (the order is still confirmed, and flagged)
StatedAmount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6), PlainDecimal, PlainNotation]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=13, decimal_places=3), PlainDecimal, PlainNotation]

#: the business calendar: a date outside it is a typo or an attack, never an order. Fixed, not relative
#: to today, so that a message valid when sent stays valid when replayed; wide enough for any
#: plausible history and plan, and far from the edge of Python's and the back offices' calendars
#: (an ERP adds payment terms and delivery times to it).
EARLIEST_BUSINESS_DATE = date(1900, 1, 1)
LATEST_BUSINESS_DATE = date(2199, 12, 31)
BusinessDate = Annotated[
    date,
    Field(
        ge=EARLIEST_BUSINESS_DATE,
        le=LATEST_BUSINESS_DATE,
        description=f"a date of the business calendar, {EARLIEST_BUSINESS_DATE} to {LATEST_BUSINESS_DATE}",
    ),
]
