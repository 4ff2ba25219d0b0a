"""Sales orders and the outcomes the back office reports for them."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from canonical_model.types import BusinessDate, CurrencyCode, Money, Quantity, UnitCode

CENT = Decimal("0.01")


class OrderStatus(StrEnum):
    """``failed`` is not final: the order's message left its route without an outcome (dead-lettered);
    a replay may still confirm or reject it. ``confirmed`` and ``rejected`` are final."""

    PLACED = "placed"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILED = "failed"


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=18)
    quantity: Quantity
    unit: UnitCode = "H87"
    unit_price: Money
    # A serialised line carries its computed net_amount; on input it is only checked (by the order,
    # once for all lines: a validator per line costs more than the rest of the validation).
    stated_net_amount: Decimal | None = Field(default=None, validation_alias="net_amount", exclude=True, repr=False)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net_amount(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(CENT)


class SalesOrder(BaseModel):
    """An order as placed in the CRM. ``id`` is the CRM's key and the ERP's idempotency key.

    ``total`` and each line's ``net_amount`` are derived; a serialised order carries them, and on
    input a stated value must match, so that a message corrupted or edited by hand cannot carry a
    total that disagrees with its lines.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=35)
    customer_id: str = Field(min_length=1, max_length=40)
    currency: CurrencyCode = "EUR"
    order_date: BusinessDate
    lines: list[OrderLine] = Field(min_length=1)
    stated_total: Decimal | None = Field(default=None, validation_alias="total", exclude=True, repr=False)

    @model_validator(mode="after")
    def _stated_amounts_match(self) -> SalesOrder:
        total = Decimal("0.00")
        for index, line in enumerate(self.lines):
            net = line.net_amount
            if line.stated_net_amount is not None:
                if line.stated_net_amount != net:
                    stated = line.stated_net_amount
                    raise ValueError(f"lines[{index}].net_amount {stated} does not match quantity x unit_price ({net})")
                line.stated_net_amount = None  # checked: equal to an order built in code again
            total += net
        if self.stated_total is not None:
            if self.stated_total != total:
                raise ValueError(f"total {self.stated_total} does not match the sum of the lines ({total})")
            self.stated_total = None
        return self

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
