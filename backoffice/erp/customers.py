"""Customer master: create (idempotent on EXTREF and IDEMPOTENCY_KEY), update (idempotent on
IDEMPOTENCY_KEY), read, changed-since; every change applied is recorded in ``customer_changes``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from backoffice.erp import faults
from backoffice.erp.faults import ErpFault
from backoffice.erp.records import Record, as_record, changed_since, require
from backoffice.erp.reference_data import DEFAULT_CURRENCY, DEFAULT_PAYMENT_TERMS
from backoffice.erp.store import (
    countries,
    credit_exposure,
    currencies,
    customer_changes,
    customers,
    next_change_seq,
    next_document_number,
    payment_terms,
)

#: request element -> column, for the fields a caller may set
FIELDS = (
    "EXTREF",
    "NAME1",
    "STCD1",
    "STRAS",
    "ORT01",
    "PSTLZ",
    "LAND1",
    "SMTP_ADDR",
    "TELF1",
    "WAERS",
    "KLIMK",
    "ZTERM",
)


_BY_KUNNR = select(customers).where(customers.c.kunnr == bindparam("kunnr"))


def find(conn: Connection, kunnr: str) -> Row[Any] | None:
    return conn.execute(_BY_KUNNR, {"kunnr": kunnr}).first()


def get(conn: Connection, kunnr: str, *, field: str = "KUNNR", code: str = faults.NOT_FOUND) -> Row[Any]:
    row = find(conn, kunnr)
    if row is None:
        raise ErpFault(code, f"customer {kunnr} does not exist", field=field, value=kunnr)
    return row


def render(conn: Connection, row: Row[Any]) -> Record:
    return as_record(row)


def _check(conn: Connection, values: Record) -> None:
    require(
        conn, countries, "land1", values["LAND1"], code=faults.UNKNOWN_COUNTRY, field="CUSTOMER.LAND1", what="country"
    )
    require(
        conn, currencies, "waers", values["WAERS"], code=faults.INVALID_DATA, field="CUSTOMER.WAERS", what="currency"
    )
    require(
        conn,
        payment_terms,
        "zterm",
        values["ZTERM"],
        code=faults.INVALID_DATA,
        field="CUSTOMER.ZTERM",
        what="payment terms key",
    )


def _owner_of(conn: Connection, extref: str) -> str | None:
    kunnr = conn.execute(select(customers.c.kunnr).where(customers.c.extref == extref)).scalar_one_or_none()
    return None if kunnr is None else str(kunnr)


#: at most this many rows of the change record per admin read
MAX_CHANGES_PAGE = 10_000


def _applied_with(conn: Connection, key: str | None) -> Row[Any] | None:
    """The change applied with the idempotency key ``key`` before, if any."""
    if key is None:
        return None
    return conn.execute(select(customer_changes).where(customer_changes.c.message_id == key)).first()


def _record_change(conn: Connection, kunnr: str, version: int | None, key: str | None, operation: str) -> None:
    conn.execute(
        insert(customer_changes).values(
            kunnr=kunnr, version=version, message_id=key, operation=operation, applied_at=datetime.now(UTC)
        )
    )


def changes(conn: Connection, kunnr: str | None, after: int, limit: int) -> list[Record]:
    """The change record (of customer ``kunnr``, or all), seq > ``after``, in the order applied, at most
    ``limit`` (1..``MAX_CHANGES_PAGE``) rows: ``{"seq", "kunnr", "version", "message_id", "operation",
    "applied_at"}`` (ISO 8601, UTC)."""
    query = select(customer_changes).where(customer_changes.c.seq > after)
    if kunnr is not None:
        query = query.where(customer_changes.c.kunnr == kunnr)
    rows = conn.execute(query.order_by(customer_changes.c.seq).limit(max(1, min(limit, MAX_CHANGES_PAGE)))).all()
    return [
        {
            "seq": row.seq,
            "kunnr": row.kunnr,
            "version": row.version,
            "message_id": row.message_id,
            "operation": row.operation,
            "applied_at": row.applied_at.isoformat(),
        }
        for row in rows
    ]


def create(conn: Connection, request: Record) -> Record:
    customer: Record = request["CUSTOMER"]
    key: str | None = request.get("IDEMPOTENCY_KEY")
    replayed = _applied_with(conn, key)
    if replayed is not None:  # the key was applied: the customer it made or changed, nothing new
        return {"KUNNR": replayed.kunnr, "CREATED": False}
    if customer.get("KUNNR") is not None:
        raise ErpFault(
            faults.INVALID_DATA,
            "KUNNR is assigned by the ERP: leave it out on create",
            field="CUSTOMER.KUNNR",
            value=customer["KUNNR"],
        )
    values = {name: customer.get(name) for name in FIELDS}
    values["WAERS"] = values["WAERS"] or DEFAULT_CURRENCY
    values["ZTERM"] = values["ZTERM"] or DEFAULT_PAYMENT_TERMS
    if values["KLIMK"] is None:
        values["KLIMK"] = Decimal("0.00")
    _check(conn, values)
    if values["EXTREF"] is not None:
        known = _owner_of(conn, values["EXTREF"])
        if known is not None:  # a replay: the first create wins, nothing changes
            return {"KUNNR": known, "CREATED": False}
    kunnr = next_document_number(conn, "KUNNR")
    row = {name.lower(): value for name, value in values.items()}
    version = customer.get("VERSION")
    conn.execute(insert(customers).values(kunnr=kunnr, chseq=next_change_seq(conn), version=version, **row))
    conn.execute(insert(credit_exposure).values(kunnr=kunnr, sauft=Decimal("0.00"), skfor=Decimal("0.00")))
    _record_change(conn, kunnr, version, key, "CreateCustomer")
    return {"KUNNR": kunnr, "CREATED": True}


def change(conn: Connection, request: Record) -> Record:
    customer: Record = request["CUSTOMER"]
    kunnr = customer.get("KUNNR")
    if kunnr is None:
        raise ErpFault(faults.INVALID_DATA, "KUNNR is required to update a customer", field="CUSTOMER.KUNNR")
    current = get(conn, kunnr, field="CUSTOMER.KUNNR")
    key: str | None = request.get("IDEMPOTENCY_KEY")
    replayed = _applied_with(conn, key)
    if replayed is not None:
        if replayed.kunnr != kunnr:  # one key, two customers: the caller's mistake, never half-applied
            raise ErpFault(
                faults.INVALID_DATA,
                f"IDEMPOTENCY_KEY was applied to customer {replayed.kunnr}, not {kunnr}",
                field="IDEMPOTENCY_KEY",
                value=key,
            )
        return {"CUSTOMER": render(conn, current)}  # applied once: the current record, nothing recorded
    # elements left out keep their values
    changes = {name.lower(): customer[name] for name in FIELDS if customer.get(name) is not None}
    version = customer.get("VERSION")
    if version is not None:
        changes["version"] = version
    merged = {name: changes.get(name.lower(), getattr(current, name.lower())) for name in FIELDS}
    _check(conn, merged)
    extref = changes.get("extref")
    if extref is not None and _owner_of(conn, extref) not in (None, kunnr):
        raise ErpFault(
            faults.INVALID_DATA,
            f"EXTREF {extref!r} belongs to another customer",
            field="CUSTOMER.EXTREF",
            value=extref,
        )
    if any(getattr(current, column) != value for column, value in changes.items()):
        # CHSEQ moves only on a real change, so that a sync loop does not echo no-op updates forever
        conn.execute(update(customers).where(customers.c.kunnr == kunnr).values(chseq=next_change_seq(conn), **changes))
    _record_change(conn, kunnr, version, key, "UpdateCustomer")
    return {"CUSTOMER": render(conn, get(conn, kunnr))}


def read(conn: Connection, request: Record) -> Record:
    return {"CUSTOMER": render(conn, get(conn, request["KUNNR"]))}


def read_changed(conn: Connection, request: Record) -> Record:
    return changed_since(
        conn, customers, request["SINCE_SEQ"], request.get("MAX_ROWS"), render, "CUSTOMERS", "CUSTOMER"
    )


__all__ = ["MAX_CHANGES_PAGE", "change", "changes", "create", "find", "get", "read", "read_changed", "render"]
