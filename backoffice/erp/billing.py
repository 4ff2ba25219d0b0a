"""Invoices (read, changed-since) and incoming payments (PostPayment, changed-since)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from backoffice.erp import credit, faults
from backoffice.erp.amounts import require_precision
from backoffice.erp.faults import ErpFault
from backoffice.erp.records import Record, as_record, changed_since
from backoffice.erp.store import invoices, next_change_seq, next_document_number, payments


def render(conn: Connection, row: Row[Any]) -> Record:
    return as_record(row)


def _invoice(conn: Connection, vbeln: str) -> Row[Any]:
    row = conn.execute(select(invoices).where(invoices.c.vbeln == vbeln)).first()
    if row is None:
        raise ErpFault(faults.NOT_FOUND, f"invoice {vbeln} does not exist", field="VBELN", value=vbeln)
    return row


def read_invoice(conn: Connection, request: Record) -> Record:
    return {"INVOICE": render(conn, _invoice(conn, request["VBELN"]))}


def read_changed_invoices(conn: Connection, request: Record) -> Record:
    return changed_since(conn, invoices, request["SINCE_SEQ"], request.get("MAX_ROWS"), render, "INVOICES", "INVOICE")


def read_changed_payments(conn: Connection, request: Record) -> Record:
    return changed_since(conn, payments, request["SINCE_SEQ"], request.get("MAX_ROWS"), render, "PAYMENTS", "PAYMENT")


def post_payment(conn: Connection, request: Record) -> Record:
    """Clear (part of) an invoice's open amount; the invoice changes too (new CHSEQ, PAID when cleared)."""
    invoice = _invoice(conn, request["VBELN"])
    dmbtr = request["DMBTR"]
    if invoice.status != "OPEN":
        raise ErpFault(
            faults.INVALID_DATA,
            f"invoice {invoice.vbeln} is already {invoice.status}",
            field="VBELN",
            value=invoice.vbeln,
        )
    require_precision(dmbtr, invoice.waers, field="DMBTR")
    if dmbtr > invoice.open_amount:
        raise ErpFault(
            faults.INVALID_DATA,
            f"payment {dmbtr} {invoice.waers} is more than the open amount {invoice.open_amount} {invoice.waers}",
            field="DMBTR",
            value=dmbtr,
        )
    augbl = next_document_number(conn, "AUGBL")
    conn.execute(
        insert(payments).values(
            augbl=augbl,
            kunnr=invoice.kunnr,
            vbeln=invoice.vbeln,
            dmbtr=dmbtr,
            waers=invoice.waers,
            budat=request["BUDAT"],
            chseq=next_change_seq(conn),
        )
    )
    remaining = invoice.open_amount - dmbtr
    conn.execute(
        update(invoices)
        .where(invoices.c.vbeln == invoice.vbeln)
        .values(open_amount=remaining, status="OPEN" if remaining > 0 else "PAID", chseq=next_change_seq(conn))
    )
    credit.book(conn, invoice.kunnr, skfor=-dmbtr)
    payment = conn.execute(select(payments).where(payments.c.augbl == augbl)).one()
    return {"PAYMENT": render(conn, payment)}


__all__ = ["post_payment", "read_changed_invoices", "read_changed_payments", "read_invoice", "render"]
