"""Sales orders (idempotent on IDEMPOTENCY_KEY, credit-checked) and the invoices that bill them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select

from backoffice.erp import credit, customers, faults, materials
from backoffice.erp.amounts import require_precision
from backoffice.erp.faults import ErpFault
from backoffice.erp.records import Record, as_record, changed_since, require
from backoffice.erp.reference_data import ORDER_TYPES
from backoffice.erp.store import (
    currencies,
    invoices,
    next_change_seq,
    next_document_number,
    payment_terms,
    refused_orders,
    sales_order_items,
    sales_orders,
    units,
)
from canonical_model.money import line_amount, total_amount

#: decimal(15,2): the largest amount the contract can carry
MAX_AMOUNT = Decimal("9999999999999.99")
POSNR_STEP = 10


@dataclass(frozen=True)
class Item:
    matnr: str
    kwmenge: Decimal
    vrkme: str
    netpr: Decimal
    waers: str

    @property
    def netwr(self) -> Decimal:
        """KWMENGE x NETPR rounded commercially (half-up) to the currency's decimals, per item."""
        return line_amount(self.kwmenge, self.netpr, self.waers)


# The statements of the order path, built once (building a statement costs more than running it).
_ITEMS_OF = (
    select(sales_order_items).where(sales_order_items.c.vbeln == bindparam("vbeln")).order_by(sales_order_items.c.posnr)
)
_ORDER = select(sales_orders).where(sales_orders.c.vbeln == bindparam("vbeln"))
_ORDER_BY_KEY = select(sales_orders).where(sales_orders.c.idempotency_key == bindparam("key"))
_REFUSAL_BY_KEY = select(refused_orders).where(refused_orders.c.idempotency_key == bindparam("key"))
_TERMS_DAYS = select(payment_terms.c.days).where(payment_terms.c.zterm == bindparam("zterm"))
_INSERT_ORDER = insert(sales_orders)
_INSERT_ITEMS = insert(sales_order_items)
_INSERT_INVOICE = insert(invoices)


def render(conn: Connection, row: Row[Any]) -> Record:
    items = conn.execute(_ITEMS_OF, {"vbeln": row.vbeln}).all()
    record = as_record(row)
    record["ITEMS"] = {"ITEM": [as_record(item, skip=("vbeln",)) for item in items]}
    return record


def _find_by_key(conn: Connection, key: str) -> Row[Any] | None:
    return conn.execute(_ORDER_BY_KEY, {"key": key}).first()


def _item(conn: Connection, index: int, requested: Record, waers: str) -> Item:
    where = f"ITEMS.ITEM[{index}]"
    matnr = requested["MATNR"]
    material = materials.find(conn, matnr)
    if material is None:
        raise ErpFault(faults.UNKNOWN_MATERIAL, f"material {matnr} does not exist", field=f"{where}.MATNR", value=matnr)
    if material.lvorm:
        raise ErpFault(
            faults.INVALID_DATA, f"material {matnr} is flagged for deletion", field=f"{where}.MATNR", value=matnr
        )
    vrkme = requested.get("VRKME") or material.meins
    require(conn, units, "msehi", vrkme, code=faults.UNKNOWN_UNIT, field=f"{where}.VRKME", what="unit")
    if vrkme != material.meins:  # the reference ERP keeps no unit conversions
        raise ErpFault(
            faults.INVALID_DATA,
            f"material {matnr} is sold in {material.meins}, not {vrkme}",
            field=f"{where}.VRKME",
            value=vrkme,
        )
    netpr = requested.get("NETPR")
    if netpr is None:
        if material.waers != waers:  # nor exchange rates
            raise ErpFault(
                faults.INVALID_DATA,
                f"material {matnr} has no list price in {waers}: give NETPR",
                field=f"{where}.NETPR",
            )
        netpr = material.netpr
    require_precision(netpr, waers, field=f"{where}.NETPR")
    item = Item(matnr, requested["KWMENGE"], vrkme, netpr, waers)
    if item.netwr > MAX_AMOUNT:
        raise ErpFault(faults.INVALID_DATA, "item value too large", field=f"{where}.KWMENGE", value=item.kwmenge)
    return item


def remember_refusal(conn: Connection, request: Record, fault: ErpFault) -> None:
    """Keep a business refusal as the key's final answer (called by the service, after a rollback)."""
    key = request["IDEMPOTENCY_KEY"]
    if conn.execute(_REFUSAL_BY_KEY, {"key": key}).first():
        return  # the replay of a refusal already kept
    conn.execute(
        insert(refused_orders).values(
            idempotency_key=key,
            code=fault.code,
            text=fault.text[:500],
            field=fault.field,
            value=None if fault.value is None else fault.value[:200],
        )
    )


def create(conn: Connection, request: Record) -> Record:
    key: str = request["IDEMPOTENCY_KEY"]
    first = _find_by_key(conn, key)
    if first is not None:  # a replay: the first order, nothing new (checked before the credit check on purpose)
        return {"SALES_ORDER": render(conn, first), "CREATED": False}
    refused = conn.execute(_REFUSAL_BY_KEY, {"key": key}).first()
    if refused is not None:  # a replay of a refused order: the same refusal
        raise ErpFault(refused.code, refused.text, field=refused.field, value=refused.value)

    header: Record = request["HEADER"]
    kunnr = header["KUNNR"]
    customer = customers.get(conn, kunnr, field="HEADER.KUNNR", code=faults.UNKNOWN_CUSTOMER)
    auart = header.get("AUART") or "TA"
    if auart not in ORDER_TYPES:
        raise ErpFault(faults.INVALID_DATA, f"unknown order type {auart!r}", field="HEADER.AUART", value=auart)
    waers = header.get("WAERS") or customer.waers
    require(conn, currencies, "waers", waers, code=faults.INVALID_DATA, field="HEADER.WAERS", what="currency")
    if waers != customer.waers:  # credit is kept in the customer's currency, and there are no exchange rates
        raise ErpFault(
            faults.INVALID_DATA,
            f"customer {kunnr} is kept in {customer.waers}; orders in {waers} are not supported",
            field="HEADER.WAERS",
            value=waers,
        )
    items = [_item(conn, i, item, waers) for i, item in enumerate(request["ITEMS"]["ITEM"])]
    netwr = total_amount([item.netwr for item in items], waers)  # per item, then the sum (as billed)
    if netwr > MAX_AMOUNT:
        raise ErpFault(faults.INVALID_DATA, "order value too large", field="ITEMS")

    exposure = credit.exposure_of(conn, customer)  # read in this (serialised) write transaction
    if netwr > exposure.avail:
        raise ErpFault(
            faults.CREDIT_BLOCK,
            f"credit limit exceeded: order value {netwr} {waers} is over the available credit "
            f"{exposure.avail} {waers} of customer {kunnr} (limit {exposure.klimk}, used {exposure.oblig})",
        )

    audat: date = header.get("AUDAT") or date.today()
    vbeln = next_document_number(conn, "VBELN_ORDER")
    conn.execute(
        _INSERT_ORDER,
        {
            "vbeln": vbeln,
            "idempotency_key": key,
            "kunnr": kunnr,
            "auart": auart,
            "waers": waers,
            "bstkd": header.get("BSTKD"),
            "audat": audat,
            "netwr": netwr,
            "status": "OPEN",
            "chseq": next_change_seq(conn),
        },
    )
    conn.execute(
        _INSERT_ITEMS,
        [
            {
                "vbeln": vbeln,
                "posnr": POSNR_STEP * (i + 1),
                "matnr": item.matnr,
                "kwmenge": item.kwmenge,
                "vrkme": item.vrkme,
                "netpr": item.netpr,
                "netwr": item.netwr,
            }
            for i, item in enumerate(items)
        ],
    )
    _bill(conn, vbeln, kunnr, customer.zterm, audat, netwr, waers)
    order = conn.execute(_ORDER, {"vbeln": vbeln}).one()
    return {"SALES_ORDER": render(conn, order), "CREATED": True}


def _bill(conn: Connection, aubel: str, kunnr: str, zterm: str, fkdat: date, netwr: Decimal, waers: str) -> None:
    """The reference ERP bills an order as soon as it is created: one invoice, due after the payment terms;
    the order's value moves to the customer's open receivables (it never shows as an unbilled order)."""
    days = conn.execute(_TERMS_DAYS, {"zterm": zterm}).scalar_one()
    try:
        zfbdt = fkdat + timedelta(days=int(days))
    except OverflowError:  # a date the calendar can carry whose due date it cannot: the caller's data, not a crash
        raise ErpFault(
            faults.INVALID_DATA,
            f"order date {fkdat} is too late: its due date after {days} days ({zterm}) is past the calendar",
            field="HEADER.AUDAT",
            value=fkdat,
        ) from None
    conn.execute(
        _INSERT_INVOICE,
        {
            "vbeln": next_document_number(conn, "VBELN_INVOICE"),
            "aubel": aubel,
            "kunnr": kunnr,
            "fkdat": fkdat,
            "zfbdt": zfbdt,
            "netwr": netwr,
            "waers": waers,
            "open_amount": netwr,
            "status": "OPEN",
            "chseq": next_change_seq(conn),
        },
    )
    credit.book(conn, kunnr, skfor=netwr)


def read(conn: Connection, request: Record) -> Record:
    vbeln = request["VBELN"]
    row = conn.execute(_ORDER, {"vbeln": vbeln}).first()
    if row is None:
        raise ErpFault(faults.NOT_FOUND, f"sales order {vbeln} does not exist", field="VBELN", value=vbeln)
    return {"SALES_ORDER": render(conn, row)}


def read_changed(conn: Connection, request: Record) -> Record:
    return changed_since(
        conn, sales_orders, request["SINCE_SEQ"], request.get("MAX_ROWS"), render, "SALES_ORDERS", "SALES_ORDER"
    )


__all__ = ["create", "read", "read_changed", "render"]
