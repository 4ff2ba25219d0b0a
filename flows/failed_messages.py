"""Dead-letter subscriber: every dead letter -> the failed-message store (``crm_core.failed_store``).

The route reads the dead letter channel through a queue of its own, like ``crm.order_failures``, so
it sees every dead letter of every route, and the broker's own (``x-death``: rejected, expired,
queue full, delivery limit). A dead letter is acknowledged only after its row is committed (the
consumer acks when the handler returns); a redelivery of the same dead letter after a crash in
between finds its mark already stored and changes nothing. What the dead letter concerns in business
terms is read from its body: the customer (the envelope's ``subject``) and the order (as
``flows.order_failures`` finds it).

``EVENT_MODELS`` says which canonical model each event type's ``data`` must be, so that an edited body
can be validated against its route's model before it is replayed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime

import structlog
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from canonical_model import events
from canonical_model.order import OrderConfirmed, OrderRejected, SalesOrder
from canonical_model.party import Customer
from canonical_model.truncation import truncate
from connectors.dead_letters import DeadLetter
from crm_core.db_errors import CrmUnavailable, translate
from crm_core.failed_store import NewFailure, record_failure
from flows.order_failures import MAX_BODY_BYTES, RETRY_SCHEDULE, order_id_of
from flows.routes import DeadLetterRoute

log = structlog.get_logger(__name__)

ROUTE_NAME = "ops.failed_messages"
#: the crash point after a dead letter's row is committed and before its ack (``esb.test_hooks``)
AFTER_STORE_COMMIT = "failed_store.after_commit"
#: the model of ``data`` per event type: what an edited body is validated against
EVENT_MODELS: Mapping[str, type[BaseModel]] = {
    events.CUSTOMER_CREATED: Customer,
    events.CUSTOMER_UPDATED: Customer,
    events.ORDER_PLACED: SalesOrder,
    events.ORDER_CONFIRMED: OrderConfirmed,
    events.ORDER_REJECTED: OrderRejected,
}
#: the customer key is at most this long (Customer.id)
CUSTOMER_ID_MAX = 40


def _no_checkpoint(name: str) -> None:
    return None


def route_of(queue: str, namespace: str, route_names: Collection[str]) -> str:
    """The route whose queue (or shard ``<queue>.<i>``) ``queue`` is, or "" when it is no route's."""
    prefix = f"{namespace}."
    if not queue.startswith(prefix):
        return ""
    name = queue[len(prefix) :]
    if name in route_names:
        return name
    base, _, shard = name.rpartition(".")
    return base if shard.isdigit() and base in route_names else ""


def customer_of(body: bytes) -> str | None:
    """The envelope's ``subject`` (the customer key) if the body is an envelope naming one readably."""
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    subject = document.get("subject") if isinstance(document, dict) else None
    return subject if isinstance(subject, str) and 1 <= len(subject) <= CUSTOMER_ID_MAX else None


def failure_of(dead: DeadLetter, *, namespace: str, route_names: Collection[str]) -> NewFailure:
    """What the store keeps of ``dead`` (bounded by the store); a message without an id is keyed by a
    digest of its body."""
    message_id = dead.message_id or "sha256:" + hashlib.sha256(dead.body).hexdigest()[:56]
    if dead.by_broker:
        seconds = int(dead.failed_at.timestamp()) if dead.failed_at else ""
        mark = f"x-death:{dead.error_type}:{dead.death_count}:{seconds}"
    else:
        mark = f"esb:{dead.failed_at.isoformat() if dead.failed_at else hashlib.sha256(dead.body).hexdigest()[:32]}"
    return NewFailure(
        message_id=message_id,
        queue=dead.failed_queue or "?",
        route=route_of(dead.failed_queue, namespace, route_names),
        event_type=dead.routing_key,
        reason=dead.reason,
        exception_type=dead.error_type or "Unknown",
        stack=dead.stack or None,
        by_broker=dead.by_broker,
        mark=truncate(mark, 80),
        failed_at=dead.failed_at or datetime.now(UTC),
        headers=dead.headers,
        body=dead.body,
        customer_id=customer_of(dead.body),
        order_id=order_id_of(dead.body, dead.routing_key),
    )


class StoreFailedMessage:
    """The handler: one dead letter -> one row (inserted or updated), committed before the ack."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        namespace: str,
        route_names: Collection[str],
        checkpoint: Callable[[str], None] = _no_checkpoint,
    ) -> None:
        self._sessions = sessions
        self._namespace = namespace
        self._route_names = frozenset(route_names)
        self._checkpoint = checkpoint

    def __call__(self, dead: DeadLetter) -> None:
        new = failure_of(dead, namespace=self._namespace, route_names=self._route_names)
        try:
            failure_id, changed = record_failure(self._sessions, new)
        except SQLAlchemyError as exc:  # the CRM database is away: a delayed retry of this dead letter
            raise translate(exc, "record_failure") or CrmUnavailable(str(exc)[:300]) from exc
        self._checkpoint(AFTER_STORE_COMMIT)
        # ids and names only: the reason and body may hold personal data
        log.info(
            "dead letter stored" if changed else "dead letter already stored",
            failure_id=failure_id,
            route=new.route,
            message_id=truncate(new.message_id, 80),
            error_type=truncate(new.exception_type, 80),
        )


def failed_messages_route(
    sessions: sessionmaker[Session],
    *,
    namespace: str,
    route_names: Collection[str],
    checkpoint: Callable[[str], None] = _no_checkpoint,
) -> DeadLetterRoute:
    return DeadLetterRoute(
        name=ROUTE_NAME,
        handler=StoreFailedMessage(sessions, namespace=namespace, route_names=route_names, checkpoint=checkpoint),
        description="every dead letter -> the failed-message store (route, reason, business keys), for the operator",
        retry_schedule=RETRY_SCHEDULE,
    )


__all__ = [
    "AFTER_STORE_COMMIT",
    "EVENT_MODELS",
    "ROUTE_NAME",
    "StoreFailedMessage",
    "customer_of",
    "failed_messages_route",
    "failure_of",
    "route_of",
]
