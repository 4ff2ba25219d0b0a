"""The one place where a delivery's fate is decided (after FastStream's ack policy, NServiceBus's recoverability).

- the handler returns: ack;
- the body is not a valid envelope, its type is not one the route is bound to (a publisher
  that sent a ``customer.created`` with routing key ``order.placed``: checked before the handler
  runs, so no handler acts on data its type does not promise), or the handler raises
  ``PermanentError``: dead letter channel, with the reason and the error type in the headers;
- the handler raises ``TransientError`` or anything unexpected: a *delayed retry*
  (``Delivery.retry``) after the route's retry schedule (``DEFAULT_RETRY_SCHEDULE``: 1 s, 5 s, 30 s,
  2 min, 10 min) picked by the message's own count of failed tries (``Delivery.attempts``); after
  the last step, the dead letter channel with ``retries exhausted after N tries; last error: ...``.
  Nothing sleeps in a consumer thread, and the messages behind a failing one go on at once.

Before a try, the route's gate (``connectors.breaker``) may hold it while a back office it calls
is down. A *redelivered* message (its consumer died or lost its connection before settling it)
counts its started tries in the attempt journal (``connectors.attempts``); one that killed its
consumer ``crash_limit`` times is dead-lettered, while one that was only prefetched by a dying
connection is never counted.

A dead-letter subscriber (``dead_letter_consumer``) is settled the same way, except that its input
is the dead letter itself: a body that is not an envelope is the handler's business, not an error.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from opentelemetry.trace import SpanKind

from canonical_model.envelope import MAX_BODY_BYTES, Envelope
from canonical_model.errors import InvalidMessage, PermanentError, TransientError
from canonical_model.trace_context import context_from, tracer
from canonical_model.truncation import truncate
from connectors.attempts import AttemptJournal
from connectors.base import DEAD_LETTER_STACK_MAX, LAST_ERROR_MAX, Delivery, DeliveryHandler, delivery_limit_reason
from connectors.dead_letters import DeadLetter, read_dead_letter
from connectors.metrics import RouteMetrics
from connectors.topics import topic_matches

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Envelope], None]
DeadLetterHandler = Callable[[DeadLetter], None]
#: a named point in the processing of a delivery where tests may kill the process (``esb.test_hooks``)
Checkpoint = Callable[[str], None]

#: seconds of each delayed retry step: 13 min 36 s in all, so that a back office down for ten minutes
#: delays a message and does not dead-letter it (after NServiceBus's delayed retries, spaced wider)
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
#: tries that killed the consumer (started, never settled) before a redelivered message is dead-lettered
DEFAULT_CRASH_LIMIT = 5
#: the delivery limit of a route's queue before delayed retries (only ``sleep_retry`` still uses it)
OLD_DELIVERY_LIMIT = 5
#: the checkpoint after a handler returned (its effect committed) and before the ack
AFTER_HANDLER = "route.after_commit"


def stack_of(error: BaseException) -> str:
    """The last ``DEAD_LETTER_STACK_MAX`` characters of ``error``'s traceback (the innermost frames), for the
    dead letter's ``x-esb-error-stack``; file paths and code lines only, no local values."""
    text = "".join(traceback.format_exception(error))
    return text[-DEAD_LETTER_STACK_MAX:]


def _no_checkpoint(name: str) -> None:
    return None


class Gate(Protocol):
    """What a route passes before each try (``connectors.breaker.RouteGate``)."""

    def enter(self) -> bool:
        """Block while the route is paused; False: do not try (the worker is stopping)."""
        ...

    def leave(self, error: BaseException | None, key: str | None = None) -> None:
        """The outcome of the try ``enter`` let through; ``key``: the message's id (a message failing
        again is not one more failure of the back office)."""
        ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """How a route settles what its handler could not do.

    ``retry_schedule``: seconds of each delayed retry step (1 to 20 steps); ``crash_limit``: started
    tries of a redelivered message that may kill its consumer; ``journal``: where those are counted
    (None: not counted, the queue's delivery limit is the only bound); ``gate``: held before each
    try; ``checkpoint``: called with ``AFTER_HANDLER`` between the handler's return and the ack;
    ``metrics``: the route's counters (``connectors.metrics``), told of every delivery and its outcome.

    ``ack_before_work`` and ``sleep_retry`` switch safeguards *off*, for tests that must show they
    can catch the loss or the dead letter that follows (``esb.test_hooks``): ack first, then work;
    the old retry that paused in the consumer thread (``requeue_pause`` seconds, doubling per
    delivery, at most ``requeue_pause_max``) and requeued, dead-lettering a message delivered more
    than ``requeue_limit`` times (the old route queues' delivery limit; the queues' own limit is now
    a backstop of 100).
    """

    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    crash_limit: int = DEFAULT_CRASH_LIMIT
    journal: AttemptJournal | None = None
    gate: Gate | None = None
    checkpoint: Checkpoint = field(default=_no_checkpoint)
    metrics: RouteMetrics | None = None
    ack_before_work: bool = False
    sleep_retry: bool = False
    requeue_pause: float = 0.5
    requeue_pause_max: float = 8.0
    requeue_limit: int = OLD_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        if not 1 <= len(self.retry_schedule) <= 20 or any(step <= 0 for step in self.retry_schedule):
            raise ValueError("a retry schedule has 1 to 20 steps of more than 0 seconds")
        if self.crash_limit < 1:
            raise ValueError("crash_limit must be at least 1")


def retries_exhausted_reason(tries: int, last_error: str) -> str:
    """The dead letter reason of a message whose retry schedule ran out, with its last error (bounded)."""
    return f"retries exhausted after {tries} tries; last error: {truncate(last_error, LAST_ERROR_MAX)}"


def crashed_reason(started: int) -> str:
    """The dead letter reason of a redelivered message whose tries killed its consumer ``started`` times."""
    return (
        f"its consumer died {started} times while handling it (killed, out of memory, or lost its "
        "connection) and never settled it"
    )


#: longest text taken from a message (its id, routing key, an error's reason) into a log line
MAX_LOGGED_CHARS = 300


def _bounded(text: str | None, limit: int = MAX_LOGGED_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


def _log_settled(delivery: Delivery, outcome: str, error: BaseException | str | None = None, **extra: object) -> None:
    """The one log line of a settlement: message id, queue (= route), event type, outcome, why.

    INFO, except a dead letter (WARNING, so that the default level shows it) and a retry after an
    exception no error class covers (ERROR with the traceback: that is a bug).
    """
    fields: dict[str, object] = {
        "message_id": _bounded(delivery.message_id),
        "queue": delivery.queue,
        "routing_key": _bounded(delivery.routing_key),
        "outcome": outcome,
        "delivery": delivery.previous_deliveries + 1,
        "attempt": delivery.attempts + 1,
        **extra,
    }
    if isinstance(error, str):
        fields["reason"] = _bounded(error)
    elif error is not None:
        fields["error_type"] = type(error).__name__
        fields["reason"] = _bounded(str(error))
    if outcome == "dead_lettered":
        log.warning("message settled", **fields)
    elif isinstance(error, BaseException) and not isinstance(error, TransientError | PermanentError):
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
    policy: DeliveryPolicy | None = None,
    *,
    accepts: Sequence[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> str:
    """Parse the delivery (a body over ``max_body_bytes`` is refused unparsed), check its type against
    ``accepts`` (topic patterns; ``None``: any type), run the handler, settle the delivery; returns the
    outcome's name: ``acked``, ``dead_lettered``, ``retried``, ``returned`` (not tried: stopping),
    ``requeued`` (only with ``sleep_retry``)."""

    def work() -> None:
        envelope = Envelope.from_bytes(delivery.body, max_bytes=max_body_bytes)
        # a child of the relay's span when the envelope carries its traceparent, else a new trace
        with tracer().start_as_current_span(
            f"consume {envelope.type}",
            context=context_from(envelope.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.destination.name": delivery.queue, "messaging.message.id": envelope.id},
        ):
            if accepts is not None:
                check_type(envelope, accepts)
            handler(envelope)

    return _settle(delivery, work, policy or DeliveryPolicy())


def settle_dead_letter(delivery: Delivery, handler: DeadLetterHandler, policy: DeliveryPolicy | None = None) -> str:
    """Run a dead-letter subscriber's handler on the dead letter, settle the delivery; returns the outcome."""
    return _settle(delivery, lambda: handler(read_dead_letter(delivery)), policy or DeliveryPolicy())


def _journal_start(delivery: Delivery, policy: DeliveryPolicy) -> int | None:
    """Count a started try of a redelivered message; its count, or None when it is not counted."""
    if policy.journal is None or delivery.previous_deliveries == 0 or not delivery.message_id:
        return None
    try:
        return policy.journal.start(delivery.queue, delivery.message_id)
    except TransientError as exc:  # the queue's delivery limit still bounds it
        log.warning("attempt journal unavailable; try not counted", queue=delivery.queue, error=str(exc)[:300])
        return None


def _settle(delivery: Delivery, work: Callable[[], None], policy: DeliveryPolicy) -> str:
    metrics = policy.metrics
    if metrics is None:
        return _decide(delivery, work, policy)
    metrics.consumed()
    took: list[float] = []

    def timed() -> None:
        start = time.perf_counter()
        try:
            work()
        finally:
            took.append(time.perf_counter() - start)

    outcome = _decide(delivery, timed, policy)
    metrics.settled(outcome, took[0] if took else None)
    return outcome


def _decide(delivery: Delivery, work: Callable[[], None], policy: DeliveryPolicy) -> str:
    started = _journal_start(delivery, policy)
    try:
        if started is not None and started > policy.crash_limit:
            reason = crashed_reason(started - 1)
            delivery.dead_letter(reason=reason, error_type="ConsumerCrashed")
            _log_settled(delivery, "dead_lettered", reason)
            return "dead_lettered"
        if policy.ack_before_work:  # a safeguard switched off (tests): the message is gone before its effect
            delivery.ack()
            policy.checkpoint(AFTER_HANDLER)
            try:
                work()
            except Exception as exc:
                _log_settled(delivery, "acked", exc)
            return "acked"
        return _try(delivery, work, policy)
    finally:
        if started is not None and delivery.settled and delivery.message_id:
            try:
                policy.journal.forget(delivery.queue, delivery.message_id)  # type: ignore[union-attr]
            except TransientError as exc:  # pruned later
                log.warning("attempt journal unavailable", queue=delivery.queue, error=str(exc)[:300])


def _try(delivery: Delivery, work: Callable[[], None], policy: DeliveryPolicy) -> str:
    gate = policy.gate
    if gate is not None and not gate.enter():
        delivery.return_unprocessed()
        return "returned"
    error: BaseException | None = None
    try:
        work()
    except Exception as exc:
        error = exc
    finally:
        if gate is not None:
            gate.leave(error, delivery.message_id)
    if error is None:
        policy.checkpoint(AFTER_HANDLER)
        delivery.ack()
        _log_settled(delivery, "acked")
        return "acked"
    if isinstance(error, PermanentError):
        delivery.dead_letter(reason=str(error), error_type=type(error).__name__, stack=stack_of(error))
        _log_settled(delivery, "dead_lettered", error)
        return "dead_lettered"
    # transient, or an unexpected bug that must not kill the route: the retry schedule bounds it
    last_error = str(error) if isinstance(error, TransientError) else f"unexpected {type(error).__name__}: {error}"
    if policy.sleep_retry:  # a safeguard switched off (tests): the old pause in the consumer thread, then requeue
        time.sleep(min(policy.requeue_pause_max, policy.requeue_pause * 2**delivery.previous_deliveries))
        if delivery.previous_deliveries + 1 > policy.requeue_limit:  # the old route queue's delivery limit
            reason = delivery_limit_reason(last_error)
            delivery.dead_letter(reason=reason, error_type="DeliveryLimitExceeded")
            _log_settled(delivery, "dead_lettered", reason)
            return "dead_lettered"
        delivery.requeue(last_error)
        _log_settled(delivery, "requeued", error)
        return "requeued"
    schedule = policy.retry_schedule
    if delivery.attempts >= len(schedule):
        reason = retries_exhausted_reason(delivery.attempts + 1, last_error)
        delivery.dead_letter(reason=reason, error_type="RetriesExhausted", stack=stack_of(error))
        _log_settled(delivery, "dead_lettered", error, tries=delivery.attempts + 1)
        return "dead_lettered"
    delay = schedule[delivery.attempts]
    delivery.retry(delay, last_error)
    _log_settled(delivery, "retried", error, retry_in=delay)
    return "retried"


def envelope_consumer(
    handler: EnvelopeHandler,
    policy: DeliveryPolicy | None = None,
    *,
    accepts: Sequence[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> DeliveryHandler:
    """Adapt an envelope handler to the transport's delivery callback; with ``accepts`` (the route's
    bindings) an envelope of another type is dead-lettered before the handler sees it."""

    def on_delivery(delivery: Delivery) -> None:
        settle(delivery, handler, policy, accepts=accepts, max_body_bytes=max_body_bytes)

    return on_delivery


def dead_letter_consumer(handler: DeadLetterHandler, policy: DeliveryPolicy | None = None) -> DeliveryHandler:
    """Adapt a dead-letter subscriber's handler to the transport's delivery callback."""

    def on_delivery(delivery: Delivery) -> None:
        settle_dead_letter(delivery, handler, policy)

    return on_delivery


__all__ = [
    "AFTER_HANDLER",
    "DEFAULT_CRASH_LIMIT",
    "DEFAULT_RETRY_SCHEDULE",
    "MAX_LOGGED_CHARS",
    "OLD_DELIVERY_LIMIT",
    "Checkpoint",
    "DeadLetterHandler",
    "DeliveryPolicy",
    "EnvelopeHandler",
    "Gate",
    "check_type",
    "crashed_reason",
    "dead_letter_consumer",
    "envelope_consumer",
    "retries_exhausted_reason",
    "settle",
    "settle_dead_letter",
]
