"""Helpers shared by the business modules: rows as contract records, look-ups that fault, changed-since."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, Table, select

from backoffice.erp.faults import ErpFault

Record = dict[str, Any]

DEFAULT_MAX_ROWS = 500


def as_record(row: Row[Any] | None, *, skip: tuple[str, ...] = ()) -> Record:
    """A row with the contract's (upper-case) element names."""
    assert row is not None
    return {key.upper(): value for key, value in row._mapping.items() if key not in skip}


def exists(conn: Connection, table: Table, column: str, value: object) -> bool:
    return conn.execute(select(table.c[column]).where(table.c[column] == value)).first() is not None


def require(conn: Connection, table: Table, column: str, value: object, *, code: str, field: str, what: str) -> None:
    """Fault with ``code`` at ``field`` unless ``table`` has a row whose ``column`` is ``value``."""
    if value is None or not exists(conn, table, column, value):
        raise ErpFault(code, f"unknown {what} {value!r}", field=field, value=value)


def changed_since(
    conn: Connection,
    table: Table,
    since: int,
    max_rows: int | None,
    render: Callable[[Connection, Row[Any]], Record],
    container: str,
    element: str,
) -> Record:
    """Rows with CHSEQ > ``since`` in CHSEQ order, at most ``max_rows``, with LAST_SEQ and MORE."""
    limit = max_rows or DEFAULT_MAX_ROWS
    rows = conn.execute(select(table).where(table.c.chseq > since).order_by(table.c.chseq).limit(limit + 1)).all()
    page = rows[:limit]
    return {
        container: {element: [render(conn, row) for row in page]},
        "LAST_SEQ": page[-1].chseq if page else since,
        "MORE": len(rows) > limit,
    }


def given(values: Record, *names: str) -> Record:
    """The elements of ``values`` that the request actually carried (zeep gives None for absent ones)."""
    return {name: values[name] for name in names if values.get(name) is not None}


__all__ = ["DEFAULT_MAX_ROWS", "Record", "as_record", "changed_since", "exists", "given", "require"]
