"""Money as a class: how many decimals a currency has, and how an amount is rounded to them.

One rule for the CRM, the canonical model and the reference ERP alike:

- precision: the currency's ISO 4217 minor units (JPY 0, EUR 2, KWD 3, ...);
- rounding: commercial, half away from zero (``ROUND_HALF_UP``), the way ERPs round: 0.125 EUR
  is 0.13, never Python's default banker's rounding (half-even, 0.12);
- a line's net amount is quantity x unit price rounded per line; an order's total is the sum of
  its rounded lines (what the ERP bills).

The minor units come from ISO 4217 "List one: Currency, fund and precious metal codes" as
published by its maintenance agency (SIX Group, ``list-one.xml``, issue of 2026-01-01). No library
in our lock carries that table: Babel (Airflow's, not ours) has CLDR's digits, which differ from
ISO 4217 for several currencies (IQD 0 instead of 3, ALL/IRR/RSD... 0 instead of 2). Codes left out
on purpose: those without minor units ("N.A.": XAU, XDR, XTS, XXX, ...) are not money we sell in,
and the two with 4 (CLF, UYW) are units of account finer than the CRM stores (3 decimals).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Final

#: the most minor units of any currency in the table (and the scale of the CRM's money columns)
MAX_MINOR_UNITS: Final = 3

_ZERO_DECIMALS: Final = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS: Final = "BHD IQD JOD KWD LYD OMR TND"
_TWO_DECIMALS: Final = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE "
    "CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD "
    "HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP "
    "MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS "
    "VED VES WST XAD XCD XCG YER ZAR ZMW ZWG"
)

#: ISO 4217 alphabetic code -> minor units (digits after the decimal point)
MINOR_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(_TWO_DECIMALS.split(), 2),
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}

# Products of a 13-digit quantity and an 18-digit price need up to 31 digits; the default
# context (28 digits) would round them silently, and half-even.
_WIDE_PRECISION: Final = 60


class UnknownCurrency(ValueError):
    """A currency code with no minor units in the table (not ISO 4217, or not money we hold)."""

    def __init__(self, currency: str) -> None:
        super().__init__(f"{currency[:8]!r} is not an ISO 4217 currency with minor units")
        self.currency = currency


def minor_units(currency: str) -> int:
    """The currency's ISO 4217 minor units (0 to 3); raises ``UnknownCurrency``."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrency(currency) from None


def is_known_currency(currency: str) -> bool:
    return currency in MINOR_UNITS


def _exponent(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-up to the currency's minor units (exactly that many decimals).

    Raises ``UnknownCurrency``; ``decimal.InvalidOperation`` for a non-finite amount.
    """
    with localcontext(prec=_WIDE_PRECISION):
        return amount.quantize(_exponent(currency), rounding=ROUND_HALF_UP)


def fits_currency(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no more decimals than the currency allows (10.50 JPY does not, 10.00 does).

    Raises ``UnknownCurrency``.
    """
    if not amount.is_finite():
        return False
    return round_money(amount, currency) == amount


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    """Net amount of an order line: quantity x unit price, computed exactly, then ``round_money``."""
    with localcontext(prec=_WIDE_PRECISION):
        return round_money(quantity * unit_price, currency)


def total_amount(amounts: list[Decimal], currency: str) -> Decimal:
    """The sum of amounts already rounded per line, with the currency's number of decimals."""
    with localcontext(prec=_WIDE_PRECISION):
        return round_money(sum(amounts, Decimal(0)), currency)


__all__ = [
    "MAX_MINOR_UNITS",
    "MINOR_UNITS",
    "UnknownCurrency",
    "fits_currency",
    "is_known_currency",
    "line_amount",
    "minor_units",
    "round_money",
    "total_amount",
]
