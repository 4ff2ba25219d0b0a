"""What callers give the CRM to create things, and what it shows of an order."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from canonical_model.order import OrderStatus
from canonical_model.party import Address, Contact
from canonical_model.types import BusinessDate, CurrencyCode, Money, Quantity, UnitCode


class NewCustomer(BaseModel):
    """A customer before the CRM has given it an id."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=35)
    tax_id: str | None = Field(default=None, max_length=20)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=30)
    currency: CurrencyCode = "EUR"
    credit_limit: Money = Decimal("0")
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    addresses: list[Address] = Field(min_length=1)
    contacts: list[Contact] = Field(default_factory=list)


class NewOrderLine(BaseModel):
    """An order line; unit and price default to the catalogue's when the product is known there."""

    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=18)
    quantity: Quantity
    unit: UnitCode | None = None
    unit_price: Money | None = None


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str
    currency: CurrencyCode | None = None
    order_date: BusinessDate | None = None
    lines: list[NewOrderLine] = Field(min_length=1)


class OrderView(BaseModel):
    """An order as the CRM user sees it, with what the back office said of it."""

    id: str
    customer_id: str
    customer_name: str
    total: Decimal
    currency: str
    status: OrderStatus
    erp_order_number: str | None = None
    rejection_code: str | None = None
    rejection_reason: str | None = None
    #: why the order's message was dead-lettered (status failed)
    failure_reason: str | None = None
    #: the ERP's net value on confirmation, at the ERP's precision
    erp_net_value: Decimal | None = None
    #: the ERP's net value differs from the CRM's total
    net_value_mismatch: bool = False


__all__ = ["NewCustomer", "NewOrder", "NewOrderLine", "OrderView"]
