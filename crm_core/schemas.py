"""What callers give the CRM to create things, and what it shows of an order."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from canonical_model.order import OrderStatus
from canonical_model.party import Address, Contact
from canonical_model.text import control_char, describe_char, shown
from canonical_model.types import BusinessDate, CurrencyCode, Money, Quantity, Text, UnitCode


def one_line(value: object) -> object:
    """Refuse a text with a control character (C0, DEL, C1) or one XML 1.0 cannot carry.

    No back office takes them in a name, an address or a code; refused here, at the CRM's input,
    they never reach a message. Raises ValueError (pydantic adds the field's location) with the
    character's code point and position and the value shown escaped (``'Nordlicht\\x0bTechnik GmbH'``).
    """
    if isinstance(value, str):
        found = control_char(value)
        if found is not None:
            raise ValueError(
                f"contains the control character {describe_char(*found)}, which no back office accepts: {shown(value)}"
            )
    return value


class NewAddress(Address):
    """An address as the CRM takes it: text in NFC (the canonical ``Address`` does that), one line each."""

    # a canonical Address given as it is is read by its attributes (and checked like a dict)
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    _one_line = field_validator("*")(one_line)


class NewContact(Contact):
    """A contact as the CRM takes it: text in NFC, one line each."""

    # a canonical Contact given as it is is read by its attributes (and checked like a dict)
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    _one_line = field_validator("*")(one_line)


class NewCustomer(BaseModel):
    """A customer before the CRM has given it an id."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=35)
    tax_id: Text | None = Field(default=None, max_length=20)
    email: EmailStr | None = None
    phone: Text | None = Field(default=None, max_length=30)
    currency: CurrencyCode = "EUR"
    credit_limit: Money = Decimal("0")
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    addresses: list[NewAddress] = Field(min_length=1)
    contacts: list[NewContact] = Field(default_factory=list)

    _one_line = field_validator("*")(one_line)


class CustomerChanges(BaseModel):
    """What a caller changes of a customer: only the fields given, checked as ``NewCustomer`` checks them.

    ``addresses`` and ``contacts`` replace the whole list. ``tax_id``, ``email`` and ``phone`` may be
    given as null (cleared); the other fields may not. At least one field must be given; unknown ones
    are refused (``id`` and ``version`` belong to the CRM). Raises pydantic's ``ValidationError``.
    """

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=35)
    tax_id: Text | None = Field(default=None, max_length=20)
    email: EmailStr | None = None
    phone: Text | None = Field(default=None, max_length=30)
    currency: CurrencyCode | None = None
    credit_limit: Money | None = None
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    addresses: list[NewAddress] | None = Field(default=None, min_length=1)
    contacts: list[NewContact] | None = None

    _one_line = field_validator("*")(one_line)

    #: fields a customer must have: given as null they are refused, not cleared
    REQUIRED: ClassVar[frozenset[str]] = frozenset(
        {"name", "currency", "credit_limit", "payment_terms_days", "addresses", "contacts"}
    )

    @model_validator(mode="after")
    def _something_given(self) -> CustomerChanges:
        if not self.model_fields_set:
            raise ValueError("no changes given")
        cleared = sorted(name for name in self.model_fields_set & self.REQUIRED if getattr(self, name) is None)
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be cleared (null)")
        return self

    def given(self) -> dict[str, Any]:
        """The fields given, as plain values (addresses and contacts as dicts)."""
        return self.model_dump(include=set(self.model_fields_set))


class NewOrderLine(BaseModel):
    """An order line; unit and price default to the catalogue's when the product is known there."""

    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=18)
    quantity: Quantity
    unit: UnitCode | None = None
    unit_price: Money | None = None

    _one_line = field_validator("*")(one_line)


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str
    currency: CurrencyCode | None = None
    order_date: BusinessDate | None = None
    lines: list[NewOrderLine] = Field(min_length=1)

    _one_line = field_validator("*")(one_line)


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


class NewSyncReject(BaseModel):
    """A record an incremental pull could not take, as the pull hands it over (already bounded)."""

    model_config = ConfigDict(extra="forbid")

    #: the record's key in the source system, e.g. the MATNR
    record_key: str = Field(min_length=1, max_length=80)
    reason: str = Field(min_length=1, max_length=2000)
    #: the record as the source sent it, JSON-able and bounded (the pull maps it again on its next run)
    record: dict[str, Any]


class ErpCustomerVersionView(BaseModel):
    """The newest customer version the ERP customer sync claimed, by which message, and how many older
    ones it skipped."""

    customer_id: str
    version: int
    message_id: str
    skipped: int
    updated_at: datetime


class SyncRejectView(BaseModel):
    """A record kept aside by a pull: where from, which, why, how often tried, since when."""

    source: str
    record_key: str
    reason: str
    record: dict[str, Any] | None
    attempts: int
    first_seen: datetime
    last_seen: datetime


__all__ = [
    "CustomerChanges",
    "ErpCustomerVersionView",
    "NewAddress",
    "NewContact",
    "NewCustomer",
    "NewOrder",
    "NewOrderLine",
    "NewSyncReject",
    "OrderView",
    "SyncRejectView",
    "one_line",
]
