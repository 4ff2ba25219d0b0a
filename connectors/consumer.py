"""The one place where a delivery's fate is decided (after FastStream's ack policy).

- the handler returns: ack;
- the body is not a valid envelope, its type is not one the route is bound to (a publisher
  that sent a ``customer.created`` with routing key ``order.placed``: checked before the handler
  runs, so no handler acts on data its type does not promise), or the handler raises
  ``PermanentError``: dead letter channel, with the reason and the error type in the headers;
- the handler raises ``TransientError`` or anything unexpected: requeue, after a pause that
  grows with the delivery count (a back office that is down for a few seconds must not burn
  through the delivery limit in a few milliseconds); the queue's delivery limit dead-letters a
  message that keeps failing, so a poison message cannot block a route forever.

A dead-letter subscriber (``dead_letter_consumer``) is settled the same way, except that its input
is the dead letter itself: a body that is not an envelope is the handler's business, not an error.

The pause holds the route's consumer thread, which is the point: while a back office is down
its route slows down instead of spinning. The pause itself (8 s at most) stays under the broker's
heartbeat and the embedded transport's lease, but a handler runs in the consuming thread too: one
whose back-office calls outlast about two heartbeats (RabbitMQ) or the lease (embedded) has its
message delivered again. Idempotency keys make that harmless; keep connector timeouts and retry
budgets below those limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from canonical_model.envelope import MAX_BODY_BYTES, Envelope
from canonical_model.errors import InvalidMessage, PermanentError, TransientError
from connectors.base import Delivery, DeliveryHandler
from connectors.dead_letters import DeadLetter, read_dead_letter
from connectors.topics import topic_matches

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Envelope], None]
DeadLetterHandler = Callable[[DeadLetter], None]
#: seconds to wait before requeueing a message that failed transiently, by previous deliveries
Backoff = Callable[[int], float]


def exponential_backoff(previous_deliveries: int, *, first: float = 0.5, cap: float = 8.0) -> float:
    return float(min(cap, first * 2**previous_deliveries))


def _requeue_later(delivery: Delivery, backoff: Backoff, last_error: str) -> None:
    pause = backoff(delivery.previous_deliveries)
    if pause > 0:
        time.sleep(pause)
    delivery.requeue(last_error)


#: longest text taken from a message (its id, routing key, an error's reason) into a log line
MAX_LOGGED_CHARS = 300


def _bounded(text: str | None, limit: int = MAX_LOGGED_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


def _log_settled(delivery: Delivery, outcome: str, error: BaseException | None = None) -> None:
    """The one log line of a settlement: message id, queue (= route), event type, outcome, why.

    INFO, except a dead letter (WARNING, so that the default level shows it) and a requeue after an
    exception no error class covers (ERROR with the traceback: that is a bug).
    """
    fields: dict[str, object] = {
        "message_id": _bounded(delivery.message_id),
        "queue": delivery.queue,
        "routing_key": _bounded(delivery.routing_key),
        "outcome": outcome,
        "delivery": delivery.previous_deliveries + 1,
    }
    if error is not None:
        fields["error_type"] = type(error).__name__
        fields["reason"] = _bounded(str(error))
    if outcome == "dead_lettered":
        log.warning("message settled", **fields)
    elif error is not None and not isinstance(error, TransientError):
        log.error("message settled", **fields, unexpected=True, exc_info=error)
    else:
        log.info("message settled", **fields)


def check_type(envelope: Envelope, accepts: Sequence[str]) -> None:
    """Raise ``InvalidMessage`` unless the envelope's type matches one of the topic patterns ``accepts``."""
    if not any(topic_matches(pattern, envelope.type) for pattern in accepts):
        # the type is bounded and patterned by the envelope, the bindings are ours: the reason stays short
        raise InvalidMessage(
            f"envelope {envelope.id} of type {envelope.type} does not match this route's bindings "
            f"({', '.join(accepts)})"
        )


def settle(
    delivery: Delivery,
    handler: EnvelopeHandler,
    backoff: Backoff = exponential_backoff,
    *,
    accepts: Sequence[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> str:
    """Parse the delivery (a body over ``max_body_bytes`` is refused unparsed), check its type against
    ``accepts`` (topic patterns; ``None``: any type), run the handler, settle the delivery; returns the
    outcome's name."""

    def work() -> None:
        envelope = Envelope.from_bytes(delivery.body, max_bytes=max_body_bytes)
        if accepts is not None:
            check_type(envelope, accepts)
        handler(envelope)

    return _settle(delivery, work, backoff)


def settle_dead_letter(delivery: Delivery, handler: DeadLetterHandler, backoff: Backoff = exponential_backoff) -> str:
    """Run a dead-letter subscriber's handler on the dead letter, settle the delivery; returns the outcome."""
    return _settle(delivery, lambda: handler(read_dead_letter(delivery)), backoff)


def _settle(delivery: Delivery, work: Callable[[], None], backoff: Backoff) -> str:
    try:
        work()
    except PermanentError as exc:
        delivery.dead_letter(reason=str(exc), error_type=type(exc).__name__)
        _log_settled(delivery, "dead_lettered", exc)
        return "dead_lettered"
    # transient, or an unexpected bug that must not kill the route: the delivery limit bounds it
    except Exception as exc:
        last_error = str(exc) if isinstance(exc, TransientError) else f"unexpected {type(exc).__name__}: {exc}"
        _requeue_later(delivery, backoff, last_error)
        _log_settled(delivery, "requeued", exc)
        return "requeued"
    delivery.ack()
    _log_settled(delivery, "acked")
    return "acked"


def envelope_consumer(
    handler: EnvelopeHandler,
    backoff: Backoff = exponential_backoff,
    *,
    accepts: Sequence[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> DeliveryHandler:
    """Adapt an envelope handler to the transport's delivery callback; with ``accepts`` (the route's
    bindings) an envelope of another type is dead-lettered before the handler sees it."""

    def on_delivery(delivery: Delivery) -> None:
        settle(delivery, handler, backoff, accepts=accepts, max_body_bytes=max_body_bytes)

    return on_delivery


def dead_letter_consumer(handler: DeadLetterHandler, backoff: Backoff = exponential_backoff) -> DeliveryHandler:
    """Adapt a dead-letter subscriber's handler to the transport's delivery callback."""

    def on_delivery(delivery: Delivery) -> None:
        settle_dead_letter(delivery, handler, backoff)

    return on_delivery


__all__ = [
    "MAX_LOGGED_CHARS",
    "Backoff",
    "DeadLetterHandler",
    "EnvelopeHandler",
    "check_type",
    "dead_letter_consumer",
    "envelope_consumer",
    "exponential_backoff",
    "settle",
    "settle_dead_letter",
]
