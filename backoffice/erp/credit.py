"""Credit exposure of a customer (SAP's credit master sheet, simplified)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, func, select

from backoffice.erp import customers
from backoffice.erp.records import Record
from backoffice.erp.store import invoices, sales_orders

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


def exposure(conn: Connection, kunnr: str, *, field: str = "KUNNR", code: str = "NOT_FOUND") -> Exposure:
    customer = customers.get(conn, kunnr, field=field, code=code)
    billed = select(invoices.c.aubel)
    sauft = conn.execute(
        select(func.coalesce(func.sum(sales_orders.c.netwr), ZERO)).where(
            sales_orders.c.kunnr == kunnr, sales_orders.c.status == "OPEN", sales_orders.c.vbeln.not_in(billed)
        )
    ).scalar_one()
    skfor = conn.execute(
        select(func.coalesce(func.sum(invoices.c.open_amount), ZERO)).where(
            invoices.c.kunnr == kunnr, invoices.c.status == "OPEN"
        )
    ).scalar_one()
    return Exposure(kunnr, customer.waers, customer.klimk, Decimal(sauft), Decimal(skfor))


def status(conn: Connection, request: Record) -> Record:
    return {"CREDIT_STATUS": exposure(conn, request["KUNNR"]).as_record()}


__all__ = ["Exposure", "exposure", "status"]
