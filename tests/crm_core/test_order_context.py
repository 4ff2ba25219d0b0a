"""Issue 9: the order route reads the order's status, its customer and the customer's ERP link in one
session, and keeps customer snapshots by (id, version). A changed customer is read again: every change
moves its version (a cache keyed by the id alone would hand out the old name here)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.order import OrderStatus
from crm_core.errors import NotFound
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService


def _customer(name: str) -> NewCustomer:
    return NewCustomer.model_validate(
        {
            "name": name,
            "credit_limit": "5000",
            "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )


def test_the_order_context_follows_changes_of_the_customer(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    customer = crm.create_customer(_customer("Erste GmbH"))
    line = NewOrderLine(product_id="M", quantity=Decimal(1), unit="H87", unit_price=Decimal(1))
    order = crm.place_order(NewOrder(customer_id=customer.id, lines=[line]))

    first = crm.order_context(order.id, customer.id, system="erp")
    assert first.status == OrderStatus.PLACED
    assert first.customer is not None and first.customer.name == "Erste GmbH"
    assert first.external_customer_id is None
    first.customer.name = "changed by a caller"  # a caller's copy: the next read does not see it

    again = crm.order_context(order.id, customer.id, system="erp")
    assert again.customer is not None and again.customer.name == "Erste GmbH"

    crm.update_customer(customer.id, {"name": "Zweite GmbH"})
    crm.record_cross_reference("erp", "customer", customer.id, "0000100001")
    changed = crm.order_context(order.id, customer.id, system="erp")
    assert changed.customer is not None
    assert (changed.customer.name, changed.customer.version) == ("Zweite GmbH", 2)
    assert changed.external_customer_id == "0000100001"
    assert changed.customer.model_dump() == crm.get_customer(customer.id).model_dump()


def test_an_unknown_customer_is_none_and_an_unknown_order_not_found(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    customer = crm.create_customer(_customer("Dritte GmbH"))
    line = NewOrderLine(product_id="M", quantity=Decimal(1), unit="H87", unit_price=Decimal(1))
    order = crm.place_order(NewOrder(customer_id=customer.id, lines=[line]))
    assert crm.order_context(order.id, "CUST-NOBODY", system="erp").customer is None
    with pytest.raises(NotFound):
        crm.order_context("ORD-NOBODY", customer.id, system="erp")
