"""`esb demo`: the main job end to end, on whatever transport and database are configured.

Starts the reference ERP (a real SOAP server) and the worker, syncs the material master,
creates customers and orders (one over its credit limit, one with an unknown product),
waits for the ERP's answers and prints what became of each order.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from backoffice.erp.process import ErpServerProcess
from canonical_model.order import OrderStatus
from connectors.erp import ErpSettings
from connectors.urls import redact_url
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine, OrderView
from crm_core.services import CrmService
from esb.app import Application
from esb.config import EsbSettings
from esb.demo_preflight import check_crm_fits_new_erp, check_erp_knows_crm_links
from esb.logging import status
from esb.worker import Worker


@dataclass(frozen=True)
class DemoCustomer:
    key: str
    customer: NewCustomer


def _customer(name: str, country: str, city: str, street: str, postal: str, credit: str, **extra: str) -> NewCustomer:
    return NewCustomer.model_validate(
        {
            "name": name,
            "credit_limit": Decimal(credit),
            "addresses": [{"street": street, "city": city, "postal_code": postal, "country": country}],
            **extra,
        }
    )


DEMO_CUSTOMERS = [
    DemoCustomer(
        "mueller",
        _customer(
            "Müller Maschinenbau GmbH",
            "DE",
            "Berlin",
            "Hauptstr. 5",
            "10115",
            "50000",
            tax_id="DE123456789",
            email="einkauf@mueller-mb.example",
        ),
    ),
    DemoCustomer(
        "shanghai",
        _customer(
            "Shanghai Precision Parts",
            "CN",
            "Shanghai",
            "88 Century Ave",
            "200120",
            "30000",
            tax_id="91310000MA1FL8XQ3C",
        ),
    ),
    DemoCustomer("lyon", _customer("Lyon Hydraulique SA", "FR", "Lyon", "12 Rue de la Part-Dieu", "69003", "2000")),
    DemoCustomer(
        "acme", _customer("Acme Pumps Inc.", "US", "Houston", "500 Main St", "77002", "20000", phone="+1 713 555 0100")
    ),
]

#: (product, quantity, unit or None for the catalogue's, unit price or None for the list price)
DemoLine = tuple[str, str, str | None, str | None]

#: (customer key, lines)
DEMO_ORDERS: list[tuple[str, list[DemoLine]]] = [
    ("mueller", [("MAT-1001", "4", None, None), ("MAT-1002", "10", None, None)]),
    ("shanghai", [("MAT-1003", "200", None, None), ("MAT-1004", "100", None, None)]),
    ("lyon", [("MAT-1001", "3", None, None)]),  # 3,750 EUR against a 2,000 EUR credit limit
    ("acme", [("MAT-1005", "2", None, None), ("MAT-9999", "1", "H87", "99.00")]),  # no such material in the ERP
    ("mueller", [("MAT-1006", "50", None, None)]),
    ("acme", [("MAT-1002", "1", None, None)]),
]


def new_order(customer_id: str, *lines: DemoLine) -> NewOrder:
    """An order from (product, quantity, unit or None, unit price or None) tuples."""
    return NewOrder(
        customer_id=customer_id,
        lines=[
            NewOrderLine(
                product_id=product,
                quantity=Decimal(quantity),
                unit=unit,
                unit_price=Decimal(price) if price else None,
            )
            for product, quantity, unit, price in lines
        ],
    )


def place_demo_orders(crm: CrmService) -> list[str]:
    ids = {c.key: crm.create_customer(c.customer).id for c in DEMO_CUSTOMERS}
    return [crm.place_order(new_order(ids[key], *lines)).id for key, lines in DEMO_ORDERS]


def wait_for_outcomes(
    crm: CrmService, order_ids: list[str], *, timeout: float, progress: Callable[[int, int], None]
) -> list[OrderView]:
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        views = crm.list_orders(order_ids)
        settled = sum(1 for v in views if v.status != OrderStatus.PLACED)
        if settled != last:
            progress(settled, len(order_ids))
            last = settled
        if settled == len(order_ids) or time.monotonic() > deadline:
            return views
        time.sleep(0.1)


#: after the total of an order whose ERP net value differs from it
MISMATCH_MARKER = "!= ERP"
#: seconds the demo retries a transiently failing first material pull before it gives up
DEMO_SYNC_RETRY_SECONDS = 30.0


def _total(view: OrderView) -> str:
    text = f"{view.total:,} {view.currency}"  # the view's total has its currency's decimals
    if view.net_value_mismatch:
        erp = "?" if view.erp_net_value is None else f"{view.erp_net_value.normalize():,f}"
        text += f" {MISMATCH_MARKER} {erp}"
    return text


def render_table(views: list[OrderView]) -> str:
    header = ("CRM order", "customer", "total", "status", "ERP order / rejection reason")
    rows = [
        (
            v.id,
            v.customer_name,
            _total(v),
            v.status.value,
            (v.erp_order_number or "(no ERP number)")
            if v.status == OrderStatus.CONFIRMED
            else (v.rejection_reason or v.failure_reason or ""),
        )
        for v in views
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, str(row[-1])]))
    lines.insert(1, "  ".join(["-" * w for w in widths] + ["-" * len(header[-1])]))
    return "\n".join(lines)


def run_demo(settings: EsbSettings, *, out: TextIO = sys.stdout, timeout: float = 60.0) -> int:
    """Run the demo; returns the exit status (0 when every order got the ERP's answer)."""

    say = status
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    erp_db = settings.data_dir / "erp.db"
    check_crm_fits_new_erp(settings, erp_db)
    say(f"starting the reference ERP (SOAP) with its data in {erp_db} ...")
    with ErpServerProcess(db_path=erp_db, seed=True) as erp_server:
        erp = settings.erp.model_dump() | {"url": erp_server.url, "wsdl_url": erp_server.wsdl_url}
        settings = settings.model_copy(update={"erp": ErpSettings.model_validate(erp)})
        assert settings.database_url is not None
        say(
            f"ERP listening at {erp_server.url}; transport: {settings.transport}; "
            f"CRM database: {redact_url(settings.database_url)}"
        )
        with Application(settings) as app, Worker(app):
            check_erp_knows_crm_links(app)  # before any demo data is written
            # a transient fault (the ERP just started, a 503) is retried for up to 30 s
            products = app.material_sync.run_retrying(within=DEMO_SYNC_RETRY_SECONDS)
            say(f"material master synced: {products}")
            order_ids = place_demo_orders(app.crm)
            say(f"placed {len(order_ids)} orders for {len(DEMO_CUSTOMERS)} new customers; waiting for the ERP ...")
            views = wait_for_outcomes(
                app.crm, order_ids, timeout=timeout, progress=lambda done, total: say(f"  {done}/{total} settled")
            )
    print(render_table(views), file=out, flush=True)
    pending = [v.id for v in views if v.status == OrderStatus.PLACED]
    if pending:
        say(f"{len(pending)} orders got no answer within {timeout:.0f} s: {', '.join(pending)}")
        return 1
    failed = [v.id for v in views if v.status == OrderStatus.FAILED]
    if failed:
        say(f"{len(failed)} orders failed (their messages were dead-lettered; the reasons are in the table above)")
        return 1
    return 0


__all__ = [
    "DEMO_CUSTOMERS",
    "DEMO_ORDERS",
    "new_order",
    "place_demo_orders",
    "render_table",
    "run_demo",
    "wait_for_outcomes",
]
