from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from canonical_model import Envelope, OrderConfirmed, OrderRejected, OrderStatus, Product
from crm_core.errors import InvalidRequest, NotFound
from crm_core.models import OrderRow, OutboxRow
from crm_core.outbox import OutboxRelay, PendingEvent
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService


def _new_customer(name: str = "ACME GmbH", credit: str = "5000") -> NewCustomer:
    return NewCustomer.model_validate(
        {
            "name": name,
            "credit_limit": credit,
            "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )


def _count(sessions: sessionmaker[Session], model: type[OutboxRow] | type[OrderRow]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_customer_and_its_event_commit_together(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    customer = crm.create_customer(_new_customer())
    assert crm.get_customer(customer.id) == customer
    with crm_sessions() as session:
        row = session.scalars(select(OutboxRow)).one()
    event = Envelope.model_validate_json(row.body)
    assert (event.type, event.subject, event.data["id"]) == ("customer.created", customer.id, customer.id)


def test_failed_order_leaves_neither_order_nor_event(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    customer = crm.create_customer(_new_customer())
    with pytest.raises(InvalidRequest, match=r"lines\[1\]\.product_id"):
        crm.place_order(
            NewOrder(
                customer_id=customer.id,
                lines=[
                    NewOrderLine(product_id="MAT-1", quantity=Decimal(1), unit="H87", unit_price=Decimal(1)),
                    NewOrderLine(product_id="UNKNOWN", quantity=Decimal(1)),
                ],
            )
        )
    with pytest.raises(NotFound):
        crm.place_order(NewOrder(customer_id="nobody", lines=[NewOrderLine(product_id="X", quantity=Decimal(1))]))
    assert _count(crm_sessions, OrderRow) == 0
    assert _count(crm_sessions, OutboxRow) == 1  # only customer.created


def test_order_takes_catalogue_defaults_and_settles_once(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    crm.upsert_products([Product(id="MAT-1001", name="Pump", unit="H87", list_price=Decimal("1250.00"))])
    customer = crm.create_customer(_new_customer())
    order = crm.place_order(
        NewOrder(customer_id=customer.id, lines=[NewOrderLine(product_id="MAT-1001", quantity=Decimal(2))])
    )
    assert order.total == Decimal("2500.00")
    confirmed = OrderConfirmed(order_id=order.id, erp_order_number="0000004711", net_value=order.total, currency="EUR")
    assert crm.confirm_order(confirmed, consumer="t", message_id="m1") is True
    assert crm.confirm_order(confirmed, consumer="t", message_id="m1") is False  # redelivery: no second effect
    rejected = OrderRejected(order_id=order.id, reason="late", code="X")
    assert crm.reject_order(rejected, consumer="t", message_id="m2") is False  # settled orders stay settled
    view = crm.get_order(order.id)
    assert (view.status, view.erp_order_number, view.rejection_reason) == (OrderStatus.CONFIRMED, "0000004711", None)


def test_relay_marks_rows_published_only_after_the_transport_took_them(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    for i in range(3):
        crm.create_customer(_new_customer(f"Customer {i}"))

    def broken(events: Sequence[PendingEvent]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        OutboxRelay(crm_sessions, broken).relay_once()
    assert OutboxRelay(crm_sessions, broken).pending() == 3

    taken: list[PendingEvent] = []
    relay = OutboxRelay(crm_sessions, taken.extend, batch_size=2)
    assert relay.relay_once() == 2
    assert relay.relay_once() == 1
    assert relay.relay_once() == 0
    assert [Envelope.model_validate_json(e.body).data["name"] for e in taken] == [f"Customer {i}" for i in range(3)]


def test_cross_reference_is_idempotent_and_refuses_a_second_id(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    crm.record_cross_reference("erp", "customer", "CUST-1", "0000100001")
    crm.record_cross_reference("erp", "customer", "CUST-1", "0000100001")
    assert crm.cross_reference("erp", "customer", "CUST-1") == "0000100001"
    with pytest.raises(InvalidRequest):
        crm.record_cross_reference("erp", "customer", "CUST-1", "0000100002")


def test_product_sync_cursor_commits_with_the_products(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    assert crm.cursor("erp.materials") == 0
    crm.upsert_products([Product(id="M1", name="A", list_price=Decimal(1))], cursor=("erp.materials", 17))
    crm.upsert_products([Product(id="M1", name="B", list_price=Decimal(2))], cursor=("erp.materials", 18))
    assert crm.cursor("erp.materials") == 18
    assert [(p.id, p.name) for p in crm.list_products()] == [("M1", "B")]


def _race_outcomes(crm: CrmService, order_id: str) -> dict[str, bool]:
    """Apply a confirm and a reject for ``order_id`` started at the same instant on two connections."""
    import threading

    start = threading.Barrier(2)
    applied: dict[str, bool] = {}

    def confirm() -> None:
        outcome = OrderConfirmed(order_id=order_id, erp_order_number="0000000001", net_value=1, currency="EUR")
        start.wait()
        applied["confirm"] = crm.confirm_order(outcome, consumer="t", message_id=f"c-{order_id}")

    def reject() -> None:
        outcome = OrderRejected(order_id=order_id, reason="no", code="X")
        start.wait()
        applied["reject"] = crm.reject_order(outcome, consumer="t", message_id=f"r-{order_id}")

    threads = [threading.Thread(target=confirm), threading.Thread(target=reject)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return applied


def test_concurrent_different_outcomes_settle_each_order_once(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    customer = crm.create_customer(_new_customer())
    line = NewOrderLine(product_id="M", quantity=Decimal(1), unit="H87", unit_price=Decimal(1))
    for n in range(60):
        order = crm.place_order(NewOrder(customer_id=customer.id, lines=[line]))
        applied = _race_outcomes(crm, order.id)
        assert sorted(applied.values()) == [False, True], f"order {n}: exactly one outcome applies"
        view = crm.get_order(order.id)
        if view.status == OrderStatus.REJECTED:
            assert view.erp_order_number is None, view
        else:
            assert (view.status, view.rejection_reason) == (OrderStatus.CONFIRMED, None), view


def test_an_outcome_for_an_unknown_order_is_a_permanent_error(crm_sessions: sessionmaker[Session]) -> None:
    from canonical_model.errors import PermanentError

    crm = CrmService(crm_sessions)
    with pytest.raises(PermanentError, match="not found"):
        crm.reject_order(OrderRejected(order_id="SO-NOPE", reason="x", code="X"), consumer="t", message_id="m")
