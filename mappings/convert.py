"""The value types a definition can ask for (``type:``) and the small transforms around them.

Converters are lenient about input and strict about output: a decimal may arrive as Decimal, int,
a numeric string or a float (from JSON), and always leaves as ``Decimal``. A value they cannot
read raises ``Rejected`` with a reason; the engine adds the field path and the mapping name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Final


class Rejected(Exception):
    """A value this step cannot carry over; ``reason`` says why in the integrator's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    raise Rejected(f"expected text, found {type(value).__name__}")


def to_int(value: object) -> int:
    if isinstance(value, bool):
        raise Rejected("expected an integer, found a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise Rejected("expected an integer")


def to_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise Rejected("expected a decimal number, found a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float | str):
        # str(float) keeps what JSON said (0.1 stays 0.1), Decimal(float) would not
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise Rejected("expected a decimal number") from None
    else:
        raise Rejected(f"expected a decimal number, found {type(value).__name__}")
    if not number.is_finite():
        raise Rejected("expected a finite decimal number")
    return number


def to_date(value: object) -> date:
    if isinstance(value, datetime):
        # a timestamp is not a calendar date: which day it is depends on a time zone
        raise Rejected("expected a date, found a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise Rejected("expected an ISO date (YYYY-MM-DD)") from None
    raise Rejected(f"expected a date, found {type(value).__name__}")


_TRUE: Final = frozenset({"true", "1", "x", "yes"})  # "X" is how SAP-like systems set a flag
_FALSE: Final = frozenset({"false", "0", "no"})


def to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Rejected("expected a boolean")


CONVERTERS: Final[dict[str, Callable[[object], object]]] = {
    "str": to_str,
    "int": to_int,
    "decimal": to_decimal,
    "date": to_date,
    "bool": to_bool,
}


def with_places(value: Decimal, places: int) -> Decimal:
    """``value`` with exactly ``places`` decimals; refuses to round, since rounding money changes it."""
    exponent = Decimal(1).scaleb(-places)
    try:
        fixed = value.quantize(exponent)
    except InvalidOperation:
        raise Rejected(f"too many digits for {places} decimal places") from None
    if fixed != value:
        raise Rejected(f"more than {places} decimal places")
    return fixed


def upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


__all__ = ["CONVERTERS", "Rejected", "to_bool", "to_date", "to_decimal", "to_int", "to_str", "upper", "with_places"]
