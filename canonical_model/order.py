"""Sales orders and the outcomes the back office reports for them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, computed_field, model_validator

from canonical_model.types import CurrencyCode, Money, Quantity, UnitCode


def _split_stated(data: Any, name: str) -> tuple[Any, Any]:
    """Take a serialised computed field out of the input, to compare it once the model is built."""
    if isinstance(data, dict) and name in data:
        rest = dict(data)
        return rest, rest.pop(name)
    return data, None


def _differs(stated: Any, derived: Decimal) -> bool:
    return stated is not None and Decimal(str(stated)) != derived


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

    # Computed fields are serialised (consumers want them) but derived on input: a stated value must
    # match, so a message corrupted or edited by hand cannot carry a total that disagrees with its lines.
    @model_validator(mode="wrap")
    @classmethod
    def _stated_net_amount_matches(cls, data: Any, handler: ModelWrapValidatorHandler[OrderLine]) -> OrderLine:
        data, stated = _split_stated(data, "net_amount")
        line = handler(data)
        if _differs(stated, line.net_amount):
            raise ValueError(f"net_amount {stated} does not match quantity x unit_price ({line.net_amount})")
        return line

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

    @model_validator(mode="wrap")
    @classmethod
    def _stated_total_matches(cls, data: Any, handler: ModelWrapValidatorHandler[SalesOrder]) -> SalesOrder:
        data, stated = _split_stated(data, "total")
        order = handler(data)
        if _differs(stated, order.total):
            raise ValueError(f"total {stated} does not match the sum of the lines ({order.total})")
        return order

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
