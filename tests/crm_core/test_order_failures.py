"""An order whose message was dead-lettered is marked failed, never over an outcome; failed is not final."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from canonical_model import OrderConfirmed, OrderRejected, OrderStatus
from canonical_model.truncation import TRUNCATED
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import FAILURE_REASON_MAX, CrmService


def _confirmed(order_id: str, number: str) -> OrderConfirmed:
    return OrderConfirmed(order_id=order_id, erp_order_number=number, net_value=Decimal("10.00"), currency="EUR")


def _order(crm: CrmService, customer_id: str) -> str:
    line = NewOrderLine(product_id="MAT-1", quantity=Decimal(1), unit="H87", unit_price=Decimal("10.00"))
    return crm.place_order(NewOrder(customer_id=customer_id, lines=[line])).id


def _crm_with_orders(sessions: sessionmaker[Session], count: int) -> tuple[CrmService, list[str]]:
    crm = CrmService(sessions)
    customer = crm.create_customer(
        NewCustomer.model_validate(
            {
                "name": "Failure GmbH",
                "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}],
            }
        )
    )
    return crm, [_order(crm, customer.id) for _ in range(count)]


def test_only_an_order_without_an_outcome_is_marked_failed_and_an_outcome_settles_it(
    crm_sessions: sessionmaker[Session],
) -> None:
    crm, (placed, confirmed, rejected) = _crm_with_orders(crm_sessions, 3)
    crm.confirm_order(_confirmed(confirmed, "4711"), consumer="c", message_id="m-1")
    crm.reject_order(
        OrderRejected(order_id=rejected, reason="credit", code="CREDIT_BLOCK"), consumer="c", message_id="m-2"
    )

    assert crm.mark_order_failed(placed, "delivery limit exceeded [in esb.erp.order_placed]")
    assert not crm.mark_order_failed(confirmed, "late dead letter")
    assert not crm.mark_order_failed(rejected, "late dead letter")
    assert not crm.mark_order_failed("SO-NOBODY", "no such order")

    views = {view.id: view for view in crm.list_orders()}
    assert views[placed].status == OrderStatus.FAILED
    assert views[placed].failure_reason == "delivery limit exceeded [in esb.erp.order_placed]"
    assert (views[confirmed].status, views[confirmed].failure_reason) == (OrderStatus.CONFIRMED, None)
    assert (views[rejected].status, views[rejected].failure_reason) == (OrderStatus.REJECTED, None)
    # failing again (a replay that failed too) keeps the newer reason
    assert crm.mark_order_failed(placed, "rejected without requeue")
    assert crm.get_order(placed).failure_reason == "rejected without requeue"

    # failed is not final: an outcome settles a failed order and clears the failure
    to_confirm, to_reject = placed, _order(crm, views[placed].customer_id)
    assert crm.mark_order_failed(to_reject, "delivery limit exceeded")
    assert crm.confirm_order(_confirmed(to_confirm, "4712"), consumer="c", message_id="m")
    assert crm.reject_order(OrderRejected(order_id=to_reject, reason="no", code="X"), consumer="c", message_id="n")
    now_confirmed, now_rejected = crm.get_order(to_confirm), crm.get_order(to_reject)
    assert (now_confirmed.status, now_confirmed.erp_order_number, now_confirmed.failure_reason) == (
        OrderStatus.CONFIRMED,
        "4712",
        None,
    )
    assert (now_rejected.status, now_rejected.failure_reason) == (OrderStatus.REJECTED, None)


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def test_a_failure_reason_is_bounded(sqlite_sessions: sessionmaker[Session]) -> None:
    crm, (order_id,) = _crm_with_orders(sqlite_sessions, 1)
    assert crm.mark_order_failed(order_id, "x" * 100_000)
    reason = crm.get_order(order_id).failure_reason or ""
    assert len(reason) == FAILURE_REASON_MAX and reason.endswith(TRUNCATED)


def test_orders_are_listed_by_status_and_the_newest_first_cut(sqlite_sessions: sessionmaker[Session]) -> None:
    crm, ids = _crm_with_orders(sqlite_sessions, 5)
    crm.mark_order_failed(ids[1], "one")
    crm.mark_order_failed(ids[3], "three")
    assert [view.id for view in crm.list_orders(status=OrderStatus.FAILED)] == [ids[1], ids[3]]
    assert [view.id for view in crm.list_orders(status=OrderStatus.PLACED, limit=2)] == [ids[2], ids[4]]
    assert [view.id for view in crm.list_orders(limit=3)] == ids[2:]
    assert crm.list_orders(status=OrderStatus.CONFIRMED) == []


def test_reasons_from_the_wire_are_stored_with_their_control_characters_escaped(
    crm_sessions: sessionmaker[Session],
) -> None:
    """A NUL broke the failure mark on PostgreSQL (the order stayed placed); an OSC sequence in a rejection
    reason set the operator's terminal title in `esb orders list`: both are stored escaped."""
    crm, (failing, rejected) = _crm_with_orders(crm_sessions, 2)
    assert crm.mark_order_failed(failing, "nul \x00 and a lone \ud800 in a reason")
    assert crm.get_order(failing).failure_reason == "nul \\x00 and a lone \\ud800 in a reason"
    hostile = OrderRejected(order_id=rejected, reason="line1\nFAKE\x1b]0;title\x07", code="X\x1b[31mRED")
    assert crm.reject_order(hostile, consumer="c", message_id="m-osc")
    view = crm.get_order(rejected)
    assert view.rejection_reason == "line1\\nFAKE\\x1b]0;title\\x07" and view.rejection_code == "X\\x1b[31mRED"
