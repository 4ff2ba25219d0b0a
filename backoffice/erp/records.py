"""Helpers shared by the business modules: rows as contract records, look-ups that fault, changed-since."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, Select, Table, bindparam, select

from backoffice.erp.faults import ErpFault

Record = dict[str, Any]

DEFAULT_MAX_ROWS = 500
#: a changed-since page also stops at about this many bytes of XML (at least one record a page): 500
#: sales orders of 999 items would be 68 MB, an answer no client should have to hold at once
PAGE_BYTES = 4 * 1024 * 1024
#: ... and at about this many elements: half the ERP client's default max_answer_elements (50,000;
#: a parsed element costs a client about 350 bytes). A sales order of 999 items is about 9,000
PAGE_ELEMENTS = 25_000


def xml_size(value: object, name: str = "") -> int:
    """About how many bytes ``value`` takes as XML under an element ``name`` (unqualified children)."""
    tags = 2 * len(name) + 5 if name else 0
    if isinstance(value, dict):
        return tags + sum(xml_size(child, key) for key, child in value.items())
    if isinstance(value, list):
        return sum(xml_size(child, name) for child in value)
    return tags + (len(str(value)) if value is not None else 0)


def xml_elements(value: object, name: str = "") -> int:
    """About how many elements ``value`` makes under an element ``name`` (an upper estimate, like ``xml_size``)."""
    own = 1 if name else 0
    if isinstance(value, dict):
        return own + sum(xml_elements(child, key) for key, child in value.items())
    if isinstance(value, list):
        return sum(xml_elements(child, name) for child in value)
    return own


def as_record(row: Row[Any] | None, *, skip: tuple[str, ...] = ()) -> Record:
    """A row with the contract's (upper-case) element names."""
    assert row is not None
    return {key.upper(): value for key, value in row._mapping.items() if key not in skip}


#: the look-up statement of each (table, column), built once: building one costs more than running it
_LOOKUPS: dict[tuple[str, str], Select[Any]] = {}


def _lookup(table: Table, column: str) -> Select[Any]:
    statement = _LOOKUPS.get((table.name, column))
    if statement is None:
        statement = select(table.c[column]).where(table.c[column] == bindparam("value"))
        _LOOKUPS[(table.name, column)] = statement  # a race builds the same statement twice, harmlessly
    return statement


def exists(conn: Connection, table: Table, column: str, value: object) -> bool:
    return conn.execute(_lookup(table, column), {"value": value}).first() is not None


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
    *,
    page_bytes: int = PAGE_BYTES,
    page_elements: int = PAGE_ELEMENTS,
) -> Record:
    """Rows with CHSEQ > ``since`` in CHSEQ order, at most ``max_rows``, about ``page_bytes`` of XML and
    ``page_elements`` elements (never fewer than one record), with LAST_SEQ and MORE."""
    limit = max_rows or DEFAULT_MAX_ROWS
    rows = conn.execute(select(table).where(table.c.chseq > since).order_by(table.c.chseq).limit(limit + 1)).all()
    records: list[Record] = []
    size = elements = 0
    for row in rows[:limit]:
        record = render(conn, row)
        size += xml_size(record, element)
        elements += xml_elements(record, element)
        if records and (size > page_bytes or elements > page_elements):
            break
        records.append(record)
    taken = rows[: len(records)]
    return {
        container: {element: records},
        "LAST_SEQ": taken[-1].chseq if taken else since,
        "MORE": len(rows) > len(records),
    }


def given(values: Record, *names: str) -> Record:
    """The elements of ``values`` that the request actually carried (zeep gives None for absent ones)."""
    return {name: values[name] for name in names if values.get(name) is not None}


__all__ = [
    "DEFAULT_MAX_ROWS",
    "PAGE_BYTES",
    "PAGE_ELEMENTS",
    "Record",
    "as_record",
    "changed_since",
    "exists",
    "given",
    "require",
    "xml_elements",
    "xml_size",
]
