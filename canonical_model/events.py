"""The event catalogue: dotted, past-tense type names. The routing key is the type.

| type | data |
|---|---|
| customer.created | ``Customer`` (``version`` 1) |
| customer.updated | ``Customer``: the whole record after the change, with its new ``version`` |
| order.placed | ``SalesOrder`` |
| order.confirmed | ``OrderConfirmed`` |
| order.rejected | ``OrderRejected`` |
"""

from __future__ import annotations

CUSTOMER_CREATED = "customer.created"
CUSTOMER_UPDATED = "customer.updated"
ORDER_PLACED = "order.placed"
ORDER_CONFIRMED = "order.confirmed"
ORDER_REJECTED = "order.rejected"
