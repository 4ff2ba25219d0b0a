"""Amounts against their currency's precision: the ERP refuses 10.5 JPY as it refuses an unknown currency.

The rule itself (ISO 4217 minor units, commercial rounding) is ``canonical_model.money``, shared
with the CRM so that both compute the same net values.
"""

from __future__ import annotations

from decimal import Decimal

from backoffice.erp import faults
from backoffice.erp.faults import ErpFault
from canonical_model.money import fits_currency, is_known_currency, minor_units


def require_precision(amount: Decimal, waers: str, *, field: str) -> None:
    """Raise ``ErpFault(INVALID_DATA)`` naming ``field`` if ``amount`` has more decimals than ``waers``."""
    if not is_known_currency(waers):  # customising with a currency the rounding rule does not know
        raise ErpFault(faults.INVALID_DATA, f"currency {waers} has no decimals defined", value=waers)
    if not fits_currency(amount, waers):
        raise ErpFault(
            faults.INVALID_DATA,
            f"amount {amount} has more decimals than {waers} has ({minor_units(waers)})",
            field=field,
            value=amount,
        )


__all__ = ["require_precision"]
