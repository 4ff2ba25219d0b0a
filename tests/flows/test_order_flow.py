"""The walking skeleton end to end: CRM -> outbox -> transport -> ERP over SOAP -> transport -> CRM.

The same test runs on the embedded transport and on RabbitMQ, on SQLite and on PostgreSQL; the
ERP is the reference SOAP server in its own process, reached over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from canonical_model.envelope import Envelope
from connectors.base import HEADER_ERROR_REASON, HEADER_FAILED_QUEUE, OutgoingMessage
from connectors.publishing import publish_envelopes
from crm_core.schemas import NewCustomer, OrderView
from esb.app import Application
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import sync_materials
from tests.flows.conftest import application_on
from tests.queues import shard_queues

COMBINATIONS = [
    ("embedded", "sqlite"),
    ("embedded", "postgresql"),
    ("rabbitmq", "sqlite"),
    ("rabbitmq", "postgresql"),
]


@pytest.fixture(params=COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, erp_server: ErpServerProcess, unique_name: str
) -> Iterator[Application]:
    transport, database = request.param
    with application_on(request, tmp_path, erp_server, unique_name, transport, database) as application:
        yield application


def _customer(name: str, credit: str, country: str = "DE") -> NewCustomer:
    return NewCustomer.model_validate(
        {
            "name": name,
            "credit_limit": credit,
            "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": country}],
        }
    )


def _wait_settled(app: Application, order_ids: list[str], timeout: float = 45.0) -> dict[str, OrderView]:
    deadline = time.monotonic() + timeout
    while True:
        views = {v.id: v for v in app.crm.list_orders(order_ids)}
        if all(v.status != OrderStatus.PLACED for v in views.values()) or time.monotonic() > deadline:
            return views
        time.sleep(0.1)


def test_orders_reach_the_erp_and_come_back_confirmed_or_rejected(
    app: Application, erp_server: ErpServerProcess
) -> None:
    assert sync_materials(app.crm, app.erp).written >= 6
    good = app.crm.create_customer(_customer("Müller Maschinenbau GmbH", "50000"))
    small = app.crm.create_customer(_customer("Lyon Hydraulique SA", "2000", country="FR"))

    first = app.crm.place_order(new_order(good.id, ("MAT-1001", "4", None, None), ("MAT-1002", "10", None, None)))
    over_credit = app.crm.place_order(new_order(small.id, ("MAT-1001", "3", None, None)))
    unknown = app.crm.place_order(new_order(good.id, ("MAT-1005", "2", None, None), ("MAT-9999", "1", "H87", "99.00")))
    later = app.crm.place_order(new_order(good.id, ("MAT-1006", "50", None, None)))
    ids = [first.id, over_credit.id, unknown.id, later.id]
    # A poison message on the order route, queued before the good orders: dead-lettered, not blocking.
    app.transport.publish([OutgoingMessage(routing_key="order.placed", body=b"{not json", message_id="poison-1")])

    with Worker(app):
        views = _wait_settled(app, ids)

        assert views[first.id].status == OrderStatus.CONFIRMED
        erp_number = views[first.id].erp_order_number
        assert erp_number
        erp_order = app.erp.get_sales_order(erp_number)
        assert erp_order["BSTKD"] == first.id
        assert Decimal(erp_order["NETWR"]) == first.total == Decimal("5895.00")

        rejected = views[over_credit.id]
        assert rejected.status == OrderStatus.REJECTED
        assert rejected.rejection_code == "CREDIT_BLOCK"
        assert "3,750.00" in (rejected.rejection_reason or "") or "3750.00" in (rejected.rejection_reason or "")

        bad_product = views[unknown.id]
        assert bad_product.status == OrderStatus.REJECTED
        assert "lines[1].product_id" in (bad_product.rejection_reason or "")
        assert "MAT-9999" in (bad_product.rejection_reason or "")

        assert views[later.id].status == OrderStatus.CONFIRMED, "a rejection must not stop later orders"
        kunnr = app.crm.cross_reference("erp", "customer", good.id)
        assert kunnr is not None and erp_order["KUNNR"] == kunnr

        # Redelivered order.placed messages of a confirmed and of a rejected order are ignored: no ERP
        # call, no second ERP order, no change in the CRM. A marker order per customer queued behind
        # them tells when they have been handled (one customer's messages share one queue, or one
        # shard of it, with one consumer: in order).
        exposure_before = app.erp.credit_status(kunnr)["OBLIG"]
        calls_before = erp_server.calls("CreateSalesOrder")
        replays = [
            Envelope.new("order.placed", app.crm.get_sales_order(order_id), source="/crm", subject=customer_id)
            for order_id, customer_id in ((first.id, good.id), (over_credit.id, small.id))
        ]
        publish_envelopes(app.transport, replays)
        marker = app.crm.place_order(new_order(good.id, ("MAT-1002", "1", None, None)))
        small_marker = app.crm.place_order(new_order(small.id, ("MAT-1002", "1", None, None)))
        settled = _wait_settled(app, [marker.id, small_marker.id])
        assert (settled[marker.id].status, settled[small_marker.id].status) == (OrderStatus.CONFIRMED,) * 2
        assert erp_server.calls("CreateSalesOrder") == calls_before + 2, "only the markers reached the ERP"
        assert app.erp.credit_status(kunnr)["OBLIG"] == exposure_before + marker.total
        assert app.crm.get_order(first.id).erp_order_number == erp_number
        assert app.crm.get_order(over_credit.id).status == OrderStatus.REJECTED

    dead = app.transport.get(app.topology.dead_letter_queue)
    assert dead is not None and dead.body == b"{not json"
    assert "not a valid envelope" in str(dead.headers[HEADER_ERROR_REASON])
    # the order route's queue, i.e. one of its shards (worker.shards: 4 by default)
    order_queue = app.queue_of(next(r for r in app.routes if r.name == "erp.order_placed"))
    assert dead.headers[HEADER_FAILED_QUEUE] in shard_queues(app.topology, order_queue)
    assert len(shard_queues(app.topology, order_queue)) == 4, "the product's default shards are what is tested"
    dead.ack()
    assert app.transport.message_count(app.topology.dead_letter_queue) == 0, "nothing else was dead-lettered"
