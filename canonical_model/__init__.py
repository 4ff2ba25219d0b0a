"""Canonical business objects and the message envelope: the only language systems share."""

from canonical_model.envelope import CONTENT_TYPE, SCHEMA_VERSION, Envelope
from canonical_model.order import OrderConfirmed, OrderLine, OrderRejected, OrderStatus, SalesOrder
from canonical_model.party import Address, Contact, Customer
from canonical_model.product import Product

__all__ = [
    "CONTENT_TYPE",
    "SCHEMA_VERSION",
    "Address",
    "Contact",
    "Customer",
    "Envelope",
    "OrderConfirmed",
    "OrderLine",
    "OrderRejected",
    "OrderStatus",
    "Product",
    "SalesOrder",
]
