"""Products: in the CRM they come from the ERP's material master."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from canonical_model.types import CurrencyCode, Money, Text, UnitCode


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=18, description="the material number, shared by CRM and ERP")
    name: Text = Field(min_length=1, max_length=40)
    unit: UnitCode = "H87"
    list_price: Money
    currency: CurrencyCode = "EUR"
    active: bool = True


__all__ = ["Product"]
