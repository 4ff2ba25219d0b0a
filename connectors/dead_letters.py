"""What a dead-letter subscriber sees of a dead letter: the original message and why it died.

A message reaches the dead letter channel in one of two ways, and its reason is read accordingly:

- our consumer or transport moved it (a permanent error, or the delivery limit): the
  ``x-esb-error-reason`` and ``x-esb-failed-queue`` headers say why and where;
- the broker moved it on its own (RabbitMQ: rejected without requeue, expired, queue full, or the
  quorum queue's own delivery limit): the newest ``x-death`` entry says why and where.

A message can carry both (replayed after an earlier death): the more recent one wins. Every
header value is bounded before use; the body is passed on as it is (the subscriber bounds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from canonical_model.truncation import truncate
from connectors.base import (
    DELIVERY_LIMIT_EXCEEDED,
    HEADER_ERROR_REASON,
    HEADER_ERROR_STACK,
    HEADER_ERROR_TYPE,
    HEADER_FAILED_AT,
    HEADER_FAILED_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    DeathRecord,
    Delivery,
    HeaderValue,
)

#: characters of the reason handed on (a header from outside may be as large as a frame)
REASON_MAX = 1000
#: characters of the stack handed on
STACK_MAX = 4000
_HEADER_MAX = 255
#: what the broker's x-death reasons mean, in words
BROKER_REASONS = {
    "rejected": "rejected without requeue",
    "expired": "expired (time to live)",
    "maxlen": "dropped: queue full",
    "delivery_limit": DELIVERY_LIMIT_EXCEEDED,
}
NO_REASON = "dead-lettered without a reason"


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message. ``routing_key``: the one it had before it died (its event type);
    ``reason``: why it died, in words, at most ``REASON_MAX`` characters; ``failed_queue``: where
    ("" if unknown); ``by_broker``: the broker dead-lettered it (x-death), not our code.

    For the failed-message store: ``error_type`` (our ``x-esb-error-type``, or ``broker:<x-death reason>``),
    ``stack`` (``x-esb-error-stack``, if the consumer wrote one), ``failed_at`` (when it died, if known),
    ``death_count`` (the broker's count for that queue and reason), ``headers`` (the message's, as
    the transport read them; unbounded: the reader bounds what it keeps)."""

    routing_key: str
    message_id: str | None
    body: bytes
    reason: str
    failed_queue: str
    by_broker: bool
    error_type: str = ""
    stack: str = ""
    failed_at: datetime | None = None
    death_count: int = 0
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)


def _header(value: HeaderValue | None, limit: int = _HEADER_MAX) -> str:
    return truncate(value, limit) if isinstance(value, str) else ""


def _failed_at(value: HeaderValue | None) -> datetime | None:
    text = _header(value, 64)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _broker_is_newer(death: DeathRecord, app_reason: str, app_failed_at: datetime | None) -> bool:
    if not app_reason:
        return True
    # x-death times have whole seconds: a tie goes to our own headers, written at the moment of death
    return death.time is not None and app_failed_at is not None and death.time > app_failed_at


def read_dead_letter(delivery: Delivery) -> DeadLetter:
    """The dead letter in ``delivery`` (from a queue bound to the dead letter exchange)."""
    headers = delivery.headers
    app_reason = _header(headers.get(HEADER_ERROR_REASON), REASON_MAX)
    death = delivery.deaths[0] if delivery.deaths else None
    if death is not None and _broker_is_newer(death, app_reason, _failed_at(headers.get(HEADER_FAILED_AT))):
        words = BROKER_REASONS.get(death.reason, death.reason)
        where = f" in {death.queue}" if death.queue else ""
        return DeadLetter(
            routing_key=delivery.routing_key,
            message_id=delivery.message_id,
            body=delivery.body,
            reason=truncate(f"{words} [x-death: {death.reason}{where}, count {death.count}]", REASON_MAX),
            failed_queue=death.queue,
            by_broker=True,
            error_type=truncate(f"broker:{death.reason}", _HEADER_MAX),
            failed_at=death.time,
            death_count=death.count,
            headers=headers,
        )
    queue = _header(headers.get(HEADER_FAILED_QUEUE))
    reason = app_reason or NO_REASON
    return DeadLetter(
        routing_key=_header(headers.get(HEADER_ORIGINAL_ROUTING_KEY)) or delivery.routing_key,
        message_id=delivery.message_id,
        body=delivery.body,
        reason=truncate(f"{reason} [in {queue}]" if queue else reason, REASON_MAX),
        failed_queue=queue,
        by_broker=False,
        error_type=_header(headers.get(HEADER_ERROR_TYPE)),
        stack=_header(headers.get(HEADER_ERROR_STACK), STACK_MAX),
        failed_at=_failed_at(headers.get(HEADER_FAILED_AT)),
        headers=headers,
    )


__all__ = ["BROKER_REASONS", "NO_REASON", "REASON_MAX", "DeadLetter", "read_dead_letter"]
