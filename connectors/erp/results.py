"""What the ERP connector returns besides plain dicts (values keep the ERP's element names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class CustomerCreated:
    kunnr: str
    #: False when the ERP already knew the EXTREF: ``kunnr`` is the existing customer's
    created: bool


@dataclass(frozen=True)
class SalesOrderResult:
    #: the SALES_ORDER as the ERP returns it (VBELN, NETWR, ITEMS: {"ITEM": [...]}, ...)
    order: Record
    #: False when the idempotency key was known: ``order`` is the first order, nothing new was created
    created: bool


@dataclass(frozen=True)
class MaterialSaved:
    material: Record
    created: bool


@dataclass(frozen=True)
class ChangeBatch:
    """One page of a changed-since read; ask again from ``last_seq`` while ``more``."""

    items: list[Record] = field(default_factory=list)
    last_seq: int = 0
    more: bool = False
    #: the page size this page was read with: smaller than asked when a bigger page exceeded
    #: ``max_answer_bytes``; ask the next page with it (0: not known)
    max_rows: int = 0


__all__ = ["ChangeBatch", "CustomerCreated", "MaterialSaved", "Record", "SalesOrderResult"]
