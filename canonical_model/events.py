"""The event catalogue: dotted, past-tense type names. The routing key is the type."""

from __future__ import annotations

from pydantic import BaseModel

from canonical_model.order import OrderConfirmed, OrderRejected, SalesOrder
from canonical_model.party import Customer
from canonical_model.product import Product

CUSTOMER_CREATED = "customer.created"
CUSTOMER_UPDATED = "customer.updated"
PRODUCT_CHANGED = "product.changed"
ORDER_PLACED = "order.placed"
ORDER_CONFIRMED = "order.confirmed"
ORDER_REJECTED = "order.rejected"

#: which canonical model each event type's ``data`` holds
EVENT_DATA: dict[str, type[BaseModel]] = {
    CUSTOMER_CREATED: Customer,
    CUSTOMER_UPDATED: Customer,
    PRODUCT_CHANGED: Product,
    ORDER_PLACED: SalesOrder,
    ORDER_CONFIRMED: OrderConfirmed,
    ORDER_REJECTED: OrderRejected,
}
