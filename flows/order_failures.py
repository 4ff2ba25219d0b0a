"""Route: a dead-lettered order message -> the CRM order ``failed``, with the reason.

No order stays ``placed`` once its message has left its route without an outcome. This route
reads the dead letter channel through a queue of its own (a dead-letter subscriber), so the dead
letter queue keeps every dead letter for the operator. The order is found in the dead letter's
body: ``data.id`` of an ``order.placed``, ``data.order_id`` of an ``order.confirmed`` or
``order.rejected`` the CRM could not apply. A body too large or broken to name an order leaves
nothing to mark; other dead letters are not this route's business. Either way the dead letter is
acknowledged here and stays in the dead letter queue.

``failed`` is not final: replaying the order's ``order.placed`` runs the order route again, and its
outcome settles the order (``CrmService._settle_order``).
"""

from __future__ import annotations

import json

import structlog

from canonical_model import events
from canonical_model.truncation import truncate
from connectors.dead_letters import DeadLetter
from crm_core.services import CrmService
from flows.routes import DeadLetterRoute

log = structlog.get_logger(__name__)

#: the largest body read for its order id (an order.placed of the largest allowed order is far smaller)
MAX_BODY_BYTES = 1_048_576
#: an order id is at most this long (SalesOrder.id)
ORDER_ID_MAX = 35
#: the delayed retries of one dead letter here before it gives up (to the dead letter queue): far longer
#: than a route's 13.6 min: marking the order is the last thing that keeps it from staying ``placed`` for
#: good, and what makes it fail here is the CRM being away, which is also what dead-letters orders in
#: bulk. 1 s, 5 s, 30 s, 2 min, then every 10 min: 2 h 22 min of CRM outage in all.
RETRY_SCHEDULE: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0) + (600.0,) * 14
#: where each order event names its order
ORDER_ID_FIELD = {
    events.ORDER_PLACED: "id",
    events.ORDER_CONFIRMED: "order_id",
    events.ORDER_REJECTED: "order_id",
}


def order_id_of(body: bytes, event_type: str) -> str | None:
    """The CRM order id an ``event_type`` message body names, or None if it names none readably.

    Reads only what it needs (``type`` and one field of ``data``), so a body whose other fields
    are invalid still names its order; a body over ``MAX_BODY_BYTES`` is not read.
    """
    field = ORDER_ID_FIELD.get(event_type)
    if field is None or len(body) > MAX_BODY_BYTES:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8 / not JSON / nested too deep
        return None
    if not isinstance(document, dict) or document.get("type", event_type) != event_type:
        return None
    data = document.get("data")
    order_id = data.get(field) if isinstance(data, dict) else None
    if not isinstance(order_id, str) or not 1 <= len(order_id) <= ORDER_ID_MAX:
        return None
    return order_id


class OrderFailuresToCrm:
    def __init__(self, crm: CrmService) -> None:
        self._crm = crm

    def __call__(self, dead: DeadLetter) -> None:
        if dead.routing_key not in ORDER_ID_FIELD:
            return
        message_id = truncate(dead.message_id or "", 80)
        order_id = order_id_of(dead.body, dead.routing_key)
        if order_id is None:
            log.warning("dead-lettered order message names no order", message_id=message_id, type=dead.routing_key)
            return
        reason = dead.reason
        if dead.routing_key != events.ORDER_PLACED:
            reason = f"{dead.routing_key} not applied: {dead.reason}"
        if self._crm.mark_order_failed(order_id, reason):
            log.warning("order failed", order_id=order_id, message_id=message_id, failed_queue=dead.failed_queue)
        else:
            log.info("order not marked failed: it has an outcome, or the CRM has no such order", order_id=order_id)


def order_failures_route(crm: CrmService) -> DeadLetterRoute:
    return DeadLetterRoute(
        name="crm.order_failures",
        handler=OrderFailuresToCrm(crm),
        description="dead-lettered order.placed / order.confirmed / order.rejected -> CRM order failed, with reason",
        retry_schedule=RETRY_SCHEDULE,
    )


__all__ = [
    "MAX_BODY_BYTES",
    "ORDER_ID_FIELD",
    "RETRY_SCHEDULE",
    "OrderFailuresToCrm",
    "order_failures_route",
    "order_id_of",
]
