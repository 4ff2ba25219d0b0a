"""Sales orders and the outcomes the back office reports for them."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field, field_validator, model_validator

from canonical_model.money import fits_currency, is_known_currency, line_amount, minor_units, total_amount
from canonical_model.types import AMOUNT_DIGITS, BusinessDate, CurrencyCode, Money, Quantity, StatedAmount, UnitCode

#: an order's total fits an amount (15 significant digits, 3 of them decimals): a larger one could not be
#: stored exactly (SQLite) nor sent to the ERP (SAP CURR 15)
MAX_TOTAL = Decimal(10) ** (AMOUNT_DIGITS - 3)


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
    # The order's currency, set by the order that holds the line: rounding depends on it.
    _currency: str | None = PrivateAttr(default=None)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net_amount(self) -> Decimal:
        """quantity x unit_price rounded half-up to the order currency's minor units (money.line_amount);
        a line outside an order knows no currency: its exact product."""
        if self._currency is None:
            return self.quantity * self.unit_price
        return line_amount(self.quantity, self.unit_price, self._currency)


class SalesOrder(BaseModel):
    """An order as placed in the CRM. ``id`` is the CRM's key and the ERP's idempotency key.

    ``total`` and each line's ``net_amount`` are derived; a serialised order carries them, and on
    input a stated value must match, so that a message corrupted or edited by hand cannot carry a
    total that disagrees with its lines. Money follows ``canonical_model.money``: each line is
    rounded half-up to the currency's ISO 4217 minor units, the total is the sum of the rounded
    lines (as the ERP bills), and a unit price with more decimals than the currency has is refused.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=35)
    customer_id: str = Field(min_length=1, max_length=40)
    currency: CurrencyCode = "EUR"
    order_date: BusinessDate
    lines: list[OrderLine] = Field(min_length=1)
    stated_total: Decimal | None = Field(default=None, validation_alias="total", exclude=True, repr=False)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, currency: str) -> str:
        if not is_known_currency(currency):
            raise ValueError(f"{currency} is not an ISO 4217 currency with minor units")
        return currency

    @model_validator(mode="after")
    def _stated_amounts_match(self) -> SalesOrder:
        nets: list[Decimal] = []
        for index, line in enumerate(self.lines):
            if not fits_currency(line.unit_price, self.currency):
                places = minor_units(self.currency)
                raise ValueError(
                    f"lines[{index}].unit_price {line.unit_price} has more decimals than {self.currency} has ({places})"
                )
            line._currency = self.currency
            net = line.net_amount
            if line.stated_net_amount is not None:
                if line.stated_net_amount != net:
                    stated = line.stated_net_amount
                    raise ValueError(f"lines[{index}].net_amount {stated} does not match quantity x unit_price ({net})")
                line.stated_net_amount = None  # checked: equal to an order built in code again
            nets.append(net)
        total = total_amount(nets, self.currency)
        if total >= MAX_TOTAL:
            raise ValueError(f"total {total} is over the largest amount an order may have ({MAX_TOTAL - 1} and less)")
        if self.stated_total is not None:
            if self.stated_total != total:
                raise ValueError(f"total {self.stated_total} does not match the sum of the lines ({total})")
            self.stated_total = None
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> Decimal:
        """The sum of the lines' rounded net amounts, with the currency's number of decimals."""
        return total_amount([line.net_amount for line in self.lines], self.currency)


class OrderConfirmed(BaseModel):
    """Data of ``order.confirmed``: the ERP accepted the order (it is the system of record).

    The ERP's figures as it stated them: ``net_value`` at the ERP's precision (it may have more
    decimals than the currency), ``None`` where the answer had no usable value; the CRM compares
    them with its own total and flags a difference, it never refuses a confirmation for them.
    """

    model_config = ConfigDict(extra="forbid")

    order_id: str
    erp_order_number: str | None = Field(
        default=None, min_length=1, max_length=35, description="the ERP's document number; None if unusable"
    )
    net_value: StatedAmount | None = Field(default=None, description="the ERP's net value, at the ERP's precision")
    currency: CurrencyCode | None = Field(default=None, description="the currency of net_value, as the ERP said")


class OrderRejected(BaseModel):
    """Data of ``order.rejected``: the order cannot be fulfilled as placed."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    reason: str
    code: str = Field(description="the rejecting system's reason code, e.g. CREDIT_BLOCK or MAPPING")
    field: str | None = Field(default=None, description="canonical path of the offending field, if known")


__all__ = ["OrderConfirmed", "OrderLine", "OrderRejected", "OrderStatus", "SalesOrder"]
