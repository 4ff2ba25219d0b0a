"""Small value types shared by the business objects."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
UnitCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}$", description="UN/ECE Recommendation 20 unit code")]
#: an amount in a currency: at most 3 decimals (the most ISO 4217 minor units of any currency we hold);
#: whether it fits its own currency's precision is checked where the currency is known (canonical_model.money)
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=3)]
#: an amount as another system stated it, at that system's precision (which may exceed the currency's):
#: finite, not negative, at most 18 integer digits and 6 decimals (the CRM keeps it as Numeric(24,6))
StatedAmount = Annotated[Decimal, Field(ge=0, max_digits=24, decimal_places=6)]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=13, decimal_places=3)]
