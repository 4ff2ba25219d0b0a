"""Sales orders and the outcomes the back office reports for them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from canonical_model.types import CurrencyCode, Money, Quantity, UnitCode


class OrderStatus(StrEnum):
    PLACED = "placed"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=18)
    quantity: Quantity
    unit: UnitCode = "H87"
    unit_price: Money

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net_amount(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(Decimal("0.01"))


class SalesOrder(BaseModel):
    """An order as placed in the CRM. ``id`` is the CRM's key and the ERP's idempotency key."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=35)
    customer_id: str = Field(min_length=1, max_length=40)
    currency: CurrencyCode = "EUR"
    order_date: date
    lines: list[OrderLine] = Field(min_length=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> Decimal:
        return sum((line.net_amount for line in self.lines), Decimal("0.00"))


class OrderConfirmed(BaseModel):
    """Data of ``order.confirmed``: the ERP accepted the order."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    erp_order_number: str
    net_value: Money
    currency: CurrencyCode


class OrderRejected(BaseModel):
    """Data of ``order.rejected``: the order cannot be fulfilled as placed."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    reason: str
    code: str = Field(description="the rejecting system's reason code, e.g. CREDIT_BLOCK or MAPPING")
    field: str | None = Field(default=None, description="canonical path of the offending field, if known")


__all__ = ["OrderConfirmed", "OrderLine", "OrderRejected", "OrderStatus", "SalesOrder"]
