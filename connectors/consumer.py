"""The one place where a delivery's fate is decided (after FastStream's ack policy).

- the handler returns: ack;
- the body is not a valid envelope, or the handler raises ``PermanentError``: dead letter
  channel, with the reason and the error type in the headers;
- the handler raises ``TransientError`` or anything unexpected: requeue; the queue's
  delivery limit dead-letters a message that keeps failing, so a poison message cannot
  block a route forever.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from canonical_model.envelope import Envelope
from canonical_model.errors import PermanentError, TransientError
from connectors.base import Delivery, DeliveryHandler

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Envelope], None]


def settle(delivery: Delivery, handler: EnvelopeHandler) -> str:
    """Parse the delivery, run the handler, settle the delivery; returns the outcome's name."""
    try:
        envelope = Envelope.from_bytes(delivery.body)
        handler(envelope)
    except PermanentError as exc:
        log.warning(
            "dead-lettered",
            queue=delivery.queue,
            message_id=delivery.message_id,
            error_type=type(exc).__name__,
            reason=str(exc),
        )
        delivery.dead_letter(reason=str(exc), error_type=type(exc).__name__)
        return "dead_lettered"
    except TransientError as exc:
        log.info("requeued", queue=delivery.queue, message_id=delivery.message_id, reason=str(exc))
        delivery.requeue()
        return "requeued"
    except Exception as exc:  # an unexpected bug must not kill the route: the delivery limit bounds it
        log.exception("handler failed", queue=delivery.queue, message_id=delivery.message_id)
        del exc
        delivery.requeue()
        return "requeued"
    delivery.ack()
    return "acked"


def envelope_consumer(handler: EnvelopeHandler) -> DeliveryHandler:
    """Adapt an envelope handler to the transport's delivery callback."""

    def on_delivery(delivery: Delivery) -> None:
        settle(delivery, handler)

    return on_delivery


__all__ = ["EnvelopeHandler", "envelope_consumer", "settle"]
