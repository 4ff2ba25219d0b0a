"""Material master: list, changed-since, and maintenance (SaveMaterial)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from backoffice.erp import faults
from backoffice.erp.amounts import require_precision
from backoffice.erp.faults import ErpFault
from backoffice.erp.records import Record, as_record, changed_since, require
from backoffice.erp.store import currencies, materials, next_change_seq, units

FIELDS = ("MAKTX", "MEINS", "NETPR", "WAERS", "LVORM")


_BY_MATNR = select(materials).where(materials.c.matnr == bindparam("matnr"))


def find(conn: Connection, matnr: str) -> Row[Any] | None:
    return conn.execute(_BY_MATNR, {"matnr": matnr}).first()


def render(conn: Connection, row: Row[Any]) -> Record:
    return as_record(row)


def list_all(conn: Connection, request: Record) -> Record:
    rows = conn.execute(select(materials).order_by(materials.c.matnr)).all()
    return {"MATERIALS": {"MATERIAL": [render(conn, row) for row in rows]}}


def read_changed(conn: Connection, request: Record) -> Record:
    return changed_since(
        conn, materials, request["SINCE_SEQ"], request.get("MAX_ROWS"), render, "MATERIALS", "MATERIAL"
    )


def save(conn: Connection, request: Record) -> Record:
    material: Record = request["MATERIAL"]
    require(conn, units, "msehi", material["MEINS"], code=faults.UNKNOWN_UNIT, field="MATERIAL.MEINS", what="unit")
    require(
        conn, currencies, "waers", material["WAERS"], code=faults.INVALID_DATA, field="MATERIAL.WAERS", what="currency"
    )
    require_precision(material["NETPR"], material["WAERS"], field="MATERIAL.NETPR")
    values = {name.lower(): material.get(name) for name in FIELDS}
    values["lvorm"] = bool(values["lvorm"])
    matnr = material["MATNR"]
    current = find(conn, matnr)
    if current is None:
        conn.execute(insert(materials).values(matnr=matnr, chseq=next_change_seq(conn), **values))
    elif any(getattr(current, column) != value for column, value in values.items()):
        conn.execute(update(materials).where(materials.c.matnr == matnr).values(chseq=next_change_seq(conn), **values))
    row = find(conn, matnr)
    if row is None:  # pragma: no cover - written just above in this transaction
        raise ErpFault(faults.INTERNAL_ERROR, f"material {matnr} vanished", server=True)
    return {"MATERIAL": render(conn, row), "CREATED": current is None}


__all__ = ["find", "list_all", "read_changed", "render", "save"]
