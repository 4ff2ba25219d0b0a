"""Customers (parties), their addresses and contacts."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from canonical_model.types import CountryCode, CurrencyCode, Text


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["billing", "shipping", "registered"] = "billing"
    street: Text = Field(min_length=1, max_length=60)
    city: Text = Field(min_length=1, max_length=40)
    postal_code: Text = Field(min_length=1, max_length=10)
    country: CountryCode


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=80)
    email: EmailStr | None = None
    phone: Text | None = Field(default=None, max_length=30)
    role: Text | None = Field(default=None, max_length=40)


class Customer(BaseModel):
    """A customer as every system sees it. ``id`` is the CRM's key."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=40)
    name: Text = Field(min_length=1, max_length=35)
    tax_id: Text | None = Field(default=None, max_length=20, description="VAT id / unified social credit code")
    email: EmailStr | None = None
    phone: Text | None = Field(default=None, max_length=30)
    currency: CurrencyCode = "EUR"
    credit_limit: Decimal = Field(default=Decimal("0"), ge=0, max_digits=15, decimal_places=2)
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    addresses: list[Address] = Field(min_length=1)
    contacts: list[Contact] = Field(default_factory=list)
    version: int = Field(
        default=1,
        ge=1,
        le=2_147_483_647,
        description="the CRM's version of the record: 1 on create, one more per update (a consumer applies "
        "a customer's snapshot only if it is newer than the one it applied last)",
    )


__all__ = ["Address", "Contact", "Customer"]
