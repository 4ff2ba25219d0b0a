"""Issue 7, cases 6 and 7: a route acts only on what the envelope's type and the business calendar allow.

Case 7: an envelope whose type is not the route's (``customer.created`` or ``order.exploded``
carrying an order's data, sent with routing key ``order.placed``) is dead-lettered with the reason
before the handler runs: no ERP order. On the embedded transport and on RabbitMQ.
Case 6: an order dated 9999-12-31 is refused by the CRM (field ``order_date``), by the route
(dead-lettered, ``data.order_date``) and by the reference ERP with a business fault naming
``HEADER.AUDAT`` (``soap:Client``), not a crash (``soap:Server``) that the route would retry.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
from pydantic import ValidationError

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from canonical_model.envelope import Envelope
from canonical_model.errors import BusinessRejection, InvalidMessage
from canonical_model.order import SalesOrder
from connectors.base import HEADER_ERROR_REASON, HEADER_ERROR_TYPE, Delivery, OutgoingMessage
from crm_core.schemas import NewCustomer, NewOrder
from esb.app import Application
from esb.demo import new_order
from esb.worker import Worker
from flows.erp_customer import ensure_erp_customer
from flows.material_sync import sync_materials
from flows.payloads import data_of


def _customer(app: Application, name: str) -> str:
    new = NewCustomer.model_validate(
        {
            "name": name,
            "credit_limit": "50000",
            "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )
    return app.crm.create_customer(new).id


def _wait_not_placed(app: Application, order_id: str, timeout: float = 30.0) -> OrderStatus:
    """The order's first final status (confirmed or rejected), or its status at the timeout.

    ``failed`` is not final: a forged ``order.placed`` naming this order is dead-lettered, which marks
    the order ``failed`` until its own message confirms it.
    """
    deadline = time.monotonic() + timeout
    final = (OrderStatus.CONFIRMED, OrderStatus.REJECTED)
    while app.crm.get_order(order_id).status not in final and time.monotonic() < deadline:
        time.sleep(0.05)
    return app.crm.get_order(order_id).status


def _dead_letters(app: Application) -> list[Delivery]:
    taken = []
    while (delivery := app.transport.get(app.topology.dead_letter_queue)) is not None:
        delivery.ack()
        taken.append(delivery)
    return taken


def test_an_envelope_of_another_type_is_dead_lettered_before_the_handler(
    app: Application, erp_server: ErpServerProcess
) -> None:
    sync_materials(app.crm, app.erp)
    customer_id = _customer(app, "Typprüfung GmbH")
    order = app.crm.place_order(new_order(customer_id, ("MAT-1002", "1", None, None)))
    data = app.crm.get_sales_order(order.id)
    # The input: an order's data under another type, with the routing key of order.placed.
    forged = [
        Envelope.new(kind, data, source="/partner", subject=customer_id)
        for kind in ("customer.created", "order.exploded")
    ]
    app.transport.publish(
        [
            # the customer's partition key: the same shard as the CRM's order.placed, behind them
            OutgoingMessage(
                routing_key="order.placed", body=event.to_bytes(), message_id=event.id, partition_key=customer_id
            )
            for event in forged
        ]
    )
    calls_before = erp_server.calls("CreateSalesOrder")

    # The forged envelopes are queued before the CRM's own order.placed (the relay starts with the
    # worker) in the same shard, and its one consumer takes them in order: when the order is settled
    # they were handled.
    with Worker(app):
        assert _wait_not_placed(app, order.id) == OrderStatus.CONFIRMED

    assert erp_server.calls("CreateSalesOrder") == calls_before + 1, "only the CRM's order.placed reached the ERP"
    dead = _dead_letters(app)
    assert sorted(d.message_id for d in dead) == sorted(e.id for e in forged), "each forged envelope, once"
    for delivery in dead:
        reason = str(delivery.headers[HEADER_ERROR_REASON])
        assert "does not match this route's bindings (order.placed)" in reason
        assert Envelope.from_bytes(delivery.body).type in reason
        assert delivery.headers[HEADER_ERROR_TYPE] == "InvalidMessage"


@pytest.mark.parametrize("app", ["embedded"], indirect=True)  # the route's part does not depend on the transport
def test_an_order_dated_9999_12_31_is_refused_everywhere(app: Application, erp_server: ErpServerProcess) -> None:
    sync_materials(app.crm, app.erp)
    customer_id = _customer(app, "Kalender GmbH")

    # The CRM refuses it, naming the field.
    with pytest.raises(ValidationError) as refused:
        NewOrder.model_validate(
            {
                "customer_id": customer_id,
                "order_date": "9999-12-31",
                "lines": [{"product_id": "MAT-1002", "quantity": 1}],
            }
        )
    assert refused.value.errors()[0]["loc"] == ("order_date",)

    # An order.placed with that date from elsewhere (not through the CRM) is dead-lettered, naming the field.
    good = app.crm.get_sales_order(app.crm.place_order(new_order(customer_id, ("MAT-1002", "1", None, None))).id)
    data = good.model_dump(mode="json") | {"order_date": "9999-12-31"}
    event = Envelope.new("order.placed", data, source="/partner", subject=customer_id)
    app.transport.publish([OutgoingMessage(routing_key="order.placed", body=event.to_bytes(), message_id=event.id)])
    calls_before = erp_server.calls("CreateSalesOrder")
    with Worker(app):
        assert _wait_not_placed(app, good.id) == OrderStatus.CONFIRMED
    assert erp_server.calls("CreateSalesOrder") == calls_before + 1, "the 9999 order never reached the ERP"
    [dead] = _dead_letters(app)
    assert dead.message_id == event.id
    assert "data.order_date" in str(dead.headers[HEADER_ERROR_REASON])

    # The reference ERP answers a business fault for any order date whose due date overflows the
    # calendar (its payment terms are 30 days here), never a server crash; a replay gets the same answer.
    kunnr = ensure_erp_customer(app.crm, app.erp, app.crm.get_customer(customer_id), correlation_id=None)
    for audat in (date(9999, 12, 31), date(9999, 12, 10), date(9999, 12, 10)):
        calls = erp_server.calls("CreateSalesOrder")
        with pytest.raises(BusinessRejection) as fault:
            app.erp.create_sales_order(
                f"ERP-DATE-{audat.isoformat()}",
                {"KUNNR": kunnr, "AUDAT": audat, "BSTKD": "DATE-TEST"},
                [{"MATNR": "MAT-1002", "KWMENGE": "1"}],
            )
        assert (fault.value.code, fault.value.field) == ("INVALID_DATA", "HEADER.AUDAT")
        assert erp_server.calls("CreateSalesOrder") == calls + 1, "a business fault is not retried"
    accepted = app.erp.create_sales_order(
        "ERP-DATE-LATE-BUT-FINE", {"KUNNR": kunnr, "AUDAT": date(9999, 11, 1)}, [{"MATNR": "MAT-1002", "KWMENGE": "1"}]
    )
    assert accepted.created


def test_an_oversized_key_in_an_orders_data_gives_a_short_reason() -> None:
    line = {"product_id": "MAT-1002", "quantity": "1", "unit_price": "1.00"}
    data = {"id": "SO-1", "customer_id": "C-1", "order_date": "2026-11-23", "lines": [line], "k" * 300_000: 1}
    envelope = Envelope.new("order.placed", data, source="/partner")
    with pytest.raises(InvalidMessage) as raised:
        data_of(Envelope.from_bytes(envelope.to_bytes()), SalesOrder)
    assert len(str(raised.value)) < 300 and "300000 characters" in str(raised.value)
