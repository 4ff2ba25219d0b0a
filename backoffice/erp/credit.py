"""Credit exposure of a customer (SAP's credit master sheet, simplified).

The exposure is kept per customer in ``credit_exposure`` and moved by ``book`` in the same transaction
as every write that changes it (an order billed, a payment), so that a credit check reads one row
whatever the customer's history. ``full_exposure`` sums the history instead: the definition the kept
row always equals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from backoffice.erp import customers
from backoffice.erp.records import Record
from backoffice.erp.store import credit_exposure, open_invoices_sum, open_orders_sum

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Exposure:
    kunnr: str
    waers: str
    klimk: Decimal
    #: open sales orders not billed yet (the reference ERP bills at once, so this stays 0 for now)
    sauft: Decimal
    #: open receivables: what the customer's open invoices still owe
    skfor: Decimal

    @property
    def oblig(self) -> Decimal:
        return self.sauft + self.skfor

    @property
    def avail(self) -> Decimal:
        return self.klimk - self.oblig

    def as_record(self) -> Record:
        return {
            "KUNNR": self.kunnr,
            "WAERS": self.waers,
            "KLIMK": self.klimk,
            "SAUFT": self.sauft,
            "SKFOR": self.skfor,
            "OBLIG": self.oblig,
            "AVAIL": self.avail,
            "CRBLK": self.avail <= 0,
        }


_KEPT = select(credit_exposure.c.sauft, credit_exposure.c.skfor).where(credit_exposure.c.kunnr == bindparam("kunnr"))
_FULL = select(open_orders_sum(bindparam("kunnr")), open_invoices_sum(bindparam("kunnr")))
_BOOK = (
    update(credit_exposure)
    .where(credit_exposure.c.kunnr == bindparam("b_kunnr"))  # an UPDATE keeps bind names of columns for SET
    .values(
        sauft=credit_exposure.c.sauft + bindparam("d_sauft", type_=credit_exposure.c.sauft.type),
        skfor=credit_exposure.c.skfor + bindparam("d_skfor", type_=credit_exposure.c.skfor.type),
    )
)


def _amount(value: Any) -> Decimal:
    return ZERO if value is None else Decimal(value)


def exposure_of(conn: Connection, customer: Row[Any]) -> Exposure:
    """The exposure of ``customer`` (a ``customers`` row) as kept; summed when no row is kept for it."""
    kept = conn.execute(_KEPT, {"kunnr": customer.kunnr}).first()
    sauft, skfor = kept if kept is not None else conn.execute(_FULL, {"kunnr": customer.kunnr}).one()
    return Exposure(customer.kunnr, customer.waers, customer.klimk, _amount(sauft), _amount(skfor))


def exposure(conn: Connection, kunnr: str, *, field: str = "KUNNR", code: str = "NOT_FOUND") -> Exposure:
    """The exposure of customer ``kunnr``; ``ErpFault(code)`` at ``field`` if there is no such customer."""
    return exposure_of(conn, customers.get(conn, kunnr, field=field, code=code))


def full_exposure(conn: Connection, kunnr: str) -> tuple[Decimal, Decimal]:
    """(SAUFT, SKFOR) of customer ``kunnr`` summed over its whole history: what the kept row must equal."""
    sauft, skfor = conn.execute(_FULL, {"kunnr": kunnr}).one()
    return _amount(sauft).quantize(ZERO), _amount(skfor).quantize(ZERO)


def book(conn: Connection, kunnr: str, *, sauft: Decimal = ZERO, skfor: Decimal = ZERO) -> None:
    """Move customer ``kunnr``'s kept exposure by ``sauft`` and ``skfor`` (signed), in the caller's write
    transaction, after the change they stand for is written; a customer without a kept row gets one, summed."""
    if conn.execute(_BOOK, {"b_kunnr": kunnr, "d_sauft": sauft, "d_skfor": skfor}).rowcount == 1:
        return
    # no row kept: the full sums already include the change just written
    summed_sauft, summed_skfor = full_exposure(conn, kunnr)
    conn.execute(insert(credit_exposure).values(kunnr=kunnr, sauft=summed_sauft, skfor=summed_skfor))


def status(conn: Connection, request: Record) -> Record:
    return {"CREDIT_STATUS": exposure(conn, request["KUNNR"]).as_record()}


__all__ = ["Exposure", "book", "exposure", "exposure_of", "full_exposure", "status"]
