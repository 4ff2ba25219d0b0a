"""`esb orders list`: the CRM's orders with what became of them, as a table or as JSON."""

from __future__ import annotations

import json

from sqlalchemy.exc import SQLAlchemyError

from canonical_model.errors import EsbError
from canonical_model.order import OrderStatus
from canonical_model.truncation import truncate
from connectors.urls import redact_database_url
from crm_core.db import create_db_engine, session_factory
from crm_core.schemas import OrderView
from crm_core.services import CrmService

#: the marker of an order whose ERP net value differs from the CRM's total
MISMATCH = "!"
_HEADER = ("", "order", "customer", "total", "status", "ERP order / reason")
_CUSTOMER_WIDTH = 30
_REASON_WIDTH = 120


class OrdersUnavailable(Exception):
    """The CRM database cannot be read; the message says which one (password masked) and why."""


def read_orders(database_url: str, *, status: OrderStatus | None, limit: int) -> list[OrderView]:
    """The newest ``limit`` orders (with ``status`` only, if given), oldest first.

    Reads only: it does not migrate. Raises ``OrdersUnavailable``.
    """
    engine = create_db_engine(database_url)
    try:
        return CrmService(session_factory(engine)).list_orders(status=status, limit=limit)
    except (SQLAlchemyError, EsbError) as exc:
        # the CRM service translates database errors; the database's own words are in the cause
        said = exc.__cause__ if isinstance(exc, EsbError) and isinstance(exc.__cause__, SQLAlchemyError) else exc
        where = redact_database_url(engine.url)
        detail = truncate(str(said).splitlines()[0] if str(said) else type(said).__name__, 200)
        raise OrdersUnavailable(
            f"cannot read orders from {where}: {detail} (a new database? run `esb migrate`)"
        ) from exc
    finally:
        engine.dispose()


def outcome(view: OrderView) -> str:
    """What the order's status rests on: the ERP order number, or why it was rejected or failed."""
    if view.status == OrderStatus.CONFIRMED:
        return view.erp_order_number or ""
    if view.status == OrderStatus.REJECTED:
        return f"{view.rejection_code}: {view.rejection_reason}" if view.rejection_code else view.rejection_reason or ""
    if view.status == OrderStatus.FAILED:
        return view.failure_reason or ""
    return ""


def render_orders(views: list[OrderView]) -> str:
    """A fixed-width table, one order a line; long customer names and reasons are cut (see --format json)."""
    rows = [
        (
            MISMATCH if view.net_value_mismatch else "",
            view.id,
            truncate(view.customer_name, _CUSTOMER_WIDTH),
            f"{view.total:,.2f} {view.currency}",
            view.status.value,
            truncate(" ".join(outcome(view).split()), _REASON_WIDTH),
        )
        for view in views
    ]
    widths = [max(len(row[i]) for row in [_HEADER, *rows]) for i in range(len(_HEADER) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in [_HEADER, *rows]
    ]
    if any(view.net_value_mismatch for view in views):
        lines.append(f"{MISMATCH} the ERP's net value differs from the CRM's total")
    if not views:
        lines.append("(no orders)")
    return "\n".join(lines)


def orders_json(views: list[OrderView]) -> str:
    return json.dumps([view.model_dump(mode="json") for view in views], indent=2, ensure_ascii=False)


__all__ = ["MISMATCH", "OrdersUnavailable", "orders_json", "outcome", "read_orders", "render_orders"]
