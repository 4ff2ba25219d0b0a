"""The ERP's answer to an accepted sales order, read as ``order.confirmed`` whatever is off in it.

Once CreateSalesOrder has succeeded the ERP holds the order, and the ERP is the system of
record: the CRM must show it confirmed. A surprise in the answer (NETWR with more decimals than
the currency, a negative or absurd NETWR, WAERS missing, a VBELN longer than any document number
or blank) must therefore never become a rejection, nor an error that retries the call until the
message is dead-lettered. Each field is read on its own; one that cannot be used is left out
(None), logged at WARNING with its value (truncated), and the CRM flags the order's net value as
differing from its total.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from canonical_model.order import OrderConfirmed

log = structlog.get_logger(__name__)

#: bounds of OrderConfirmed (and of the CRM's columns): document number, amount as stated
MAX_DOCUMENT_NUMBER = 35
MAX_INTEGER_DIGITS = 18
MAX_DECIMALS = 6
#: how much of an unusable value a log line carries
MAX_LOGGED = 80

_CURRENCY = re.compile(r"[A-Z]{3}")
_DOCUMENT_NUMBER = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no blanks


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_LOGGED else text[:MAX_LOGGED] + "...[truncated]"


def document_number(value: object) -> str | None:
    """VBELN as text (blank padding trimmed), or None when it is missing, too long or not printable."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text or len(text) > MAX_DOCUMENT_NUMBER or not _DOCUMENT_NUMBER.fullmatch(text):
        return None
    return text


def stated_amount(value: object) -> Decimal | None:
    """NETWR as stated, at the ERP's precision: finite, not negative, at most 18 integer digits and
    6 decimals; None otherwise (it is not rounded: the CRM keeps what the ERP said)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    _, digits, exponent = amount.normalize().as_tuple()
    assert isinstance(exponent, int)  # finite
    decimals = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    if decimals > MAX_DECIMALS or integer_digits > MAX_INTEGER_DIGITS:
        return None
    return amount


def currency_code(value: object) -> str | None:
    """WAERS as an ISO 4217 code (blank padding trimmed), or None."""
    text = value.strip() if isinstance(value, str) else ""
    return text if _CURRENCY.fullmatch(text) else None


def confirmation_of(order_id: str, answer: Mapping[str, Any] | Any) -> OrderConfirmed:
    """``order.confirmed`` data from the ERP's SALES_ORDER (VBELN, NETWR, WAERS). Never raises."""
    fields = answer if isinstance(answer, Mapping) else {}
    raw = {name: fields.get(name) for name in ("VBELN", "NETWR", "WAERS")}
    vbeln, netwr, waers = document_number(raw["VBELN"]), stated_amount(raw["NETWR"]), currency_code(raw["WAERS"])
    read: dict[str, object] = {"VBELN": vbeln, "NETWR": netwr, "WAERS": waers}
    unusable = {name: _shown(raw[name]) for name, value in read.items() if value is None}
    if unusable:
        log.warning("the ERP accepted the order but parts of its answer are unusable", order_id=order_id, **unusable)
    return OrderConfirmed(order_id=order_id, erp_order_number=vbeln, net_value=netwr, currency=waers)


__all__ = ["confirmation_of", "currency_code", "document_number", "stated_amount"]
