"""Small value types shared by the business objects."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field

from canonical_model.text import nfc

CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
UnitCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}$", description="UN/ECE Recommendation 20 unit code")]


def _nfc(value: object) -> object:
    return nfc(value) if isinstance(value, str) else value


#: free text (names, addresses): normalised to NFC before any length check, so equal text compares equal
Text = Annotated[str, BeforeValidator(_nfc)]
Money = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=2)]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=13, decimal_places=3)]
