"""The failed-order route on its own: which dead letters name which order, read defensively."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from canonical_model import OrderStatus
from canonical_model.envelope import Envelope
from connectors.dead_letters import DeadLetter
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService
from flows.order_failures import MAX_BODY_BYTES, OrderFailuresToCrm, order_id_of


def _body(type: str, data: object) -> bytes:
    return json.dumps({"specversion": "1.0", "type": type, "source": "/crm", "data": data}).encode()


@pytest.mark.parametrize(
    ("body", "event_type", "expected"),
    [
        (_body("order.placed", {"id": "SO-1", "lines": "broken"}), "order.placed", "SO-1"),
        (_body("order.confirmed", {"order_id": "SO-2"}), "order.confirmed", "SO-2"),
        (_body("order.rejected", {"order_id": "SO-3", "reason": None}), "order.rejected", "SO-3"),
        (b'{"data": {"id": "SO-4"}}', "order.placed", "SO-4"),  # no type: the routing key says it
        (_body("order.placed", {"id": "SO-5"}), "customer.created", None),  # not an order event
        (_body("customer.created", {"id": "SO-6"}), "order.placed", None),  # body and routing key disagree
        (_body("order.placed", {"id": "S" * 36}), "order.placed", None),  # longer than an order id
        (_body("order.placed", {"id": ""}), "order.placed", None),
        (_body("order.placed", {"id": 7}), "order.placed", None),
        (_body("order.placed", ["SO-7"]), "order.placed", None),
        (b"{not json", "order.placed", None),
        (b"\xff\xfe", "order.placed", None),
        (b"[" * 100_000 + b"]" * 100_000, "order.placed", None),  # nested too deep
        (b'"SO-8"', "order.placed", None),
        (_body("order.placed", {"id": "SO-9", "pad": "x" * MAX_BODY_BYTES}), "order.placed", None),  # too large
    ],
)
def test_the_order_id_is_read_only_from_a_readable_order_message(
    body: bytes, event_type: str, expected: str | None
) -> None:
    assert order_id_of(body, event_type) == expected


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[CrmService]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    yield CrmService(session_factory(engine))
    engine.dispose()


def test_dead_letters_of_an_order_mark_it_failed_and_others_are_ignored(crm: CrmService) -> None:
    customer = crm.create_customer(
        NewCustomer.model_validate(
            {
                "name": "Route GmbH",
                "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "5", "country": "DE"}],
            }
        )
    )
    line = NewOrderLine(product_id="MAT-1", quantity=Decimal(1), unit="H87", unit_price=Decimal(1))
    placed, outcome_lost, untouched = (
        crm.place_order(NewOrder(customer_id=customer.id, lines=[line])) for _ in range(3)
    )
    route = OrderFailuresToCrm(crm)

    def dead(routing_key: str, body: bytes, reason: str) -> DeadLetter:
        return DeadLetter(routing_key, "m", body, reason, "q", by_broker=False)

    order_placed = Envelope.new("order.placed", placed, source="/crm").to_bytes()
    route(dead("order.placed", order_placed, "order names a customer the CRM does not know [in q]"))
    route(dead("order.confirmed", _body("order.confirmed", {"order_id": outcome_lost.id}), "delivery limit exceeded"))
    route(dead("customer.created", _body("customer.created", {"id": untouched.id}), "whatever"))
    route(dead("order.placed", b"{broken", "not a valid envelope"))

    views = {view.id: view for view in crm.list_orders()}
    assert views[placed.id].status == OrderStatus.FAILED
    assert views[placed.id].failure_reason == "order names a customer the CRM does not know [in q]"
    assert views[outcome_lost.id].status == OrderStatus.FAILED
    assert views[outcome_lost.id].failure_reason == "order.confirmed not applied: delivery limit exceeded"
    assert views[untouched.id].status == OrderStatus.PLACED
