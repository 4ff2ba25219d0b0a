"""The event catalogue: dotted, past-tense type names. The routing key is the type.

| type | data |
|---|---|
| customer.created | ``Customer`` |
| order.placed | ``SalesOrder`` |
| order.confirmed | ``OrderConfirmed`` |
| order.rejected | ``OrderRejected`` |
"""

from __future__ import annotations

CUSTOMER_CREATED = "customer.created"
ORDER_PLACED = "order.placed"
ORDER_CONFIRMED = "order.confirmed"
ORDER_REJECTED = "order.rejected"
