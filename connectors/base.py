"""The transport contract: what every message transport (RabbitMQ, embedded) offers.

Vocabulary follows Apache Camel: an *exchange* receives published messages and routes them
by routing key (the event type) to the *queues* of the routes bound to it; a message that a
route cannot process goes to the *dead letter channel* with the reason in its headers.

A transport is small on purpose (after kombu's): declare, publish, consume, get, close.
The ack decision is not made here: see ``connectors.consumer``.
"""

from __future__ import annotations

import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import structlog

from canonical_model.errors import Unroutable
from canonical_model.truncation import truncate

log = structlog.get_logger(__name__)

HeaderValue = str | int

#: headers the dead letter channel adds to a message it takes
HEADER_ERROR_REASON = "x-esb-error-reason"
HEADER_ERROR_TYPE = "x-esb-error-type"
#: the innermost frames of the error's stack (bounded: ``DEAD_LETTER_STACK_MAX``), when the consumer had one
HEADER_ERROR_STACK = "x-esb-error-stack"
HEADER_FAILED_QUEUE = "x-esb-failed-queue"
HEADER_FAILED_AT = "x-esb-failed-at"
HEADER_ORIGINAL_ROUTING_KEY = "x-esb-original-routing-key"

#: a replayed failure (``Transport.send_to_queue``): the id of the stored failure it replays
HEADER_REPLAY_OF = "x-esb-replay-of"

#: headers of a delayed retry (``Delivery.retry``): how many tries failed transiently before, the last error
HEADER_ATTEMPTS = "x-esb-attempts"
HEADER_LAST_ERROR = "x-esb-last-error"
#: RabbitMQ: the header the retry exchange routes on (the delay step, in milliseconds)
HEADER_RETRY_DELAY = "x-esb-retry-delay"
#: the key that keeps a customer's events on one shard (the envelope's subject, else its message id)
HEADER_PARTITION_KEY = "x-esb-partition-key"
#: attempts above this in a header are no count of ours (a publisher's junk): read as this
ATTEMPTS_MAX = 1000

#: the reason a transport gives when a message was delivered more often than its queue's delivery limit
DELIVERY_LIMIT_EXCEEDED = "delivery limit exceeded"
#: characters of the last error a delivery-limit reason carries (headers are bounded: see LIBRARY-NOTES)
LAST_ERROR_MAX = 500


def delivery_limit_reason(last_error: str = "") -> str:
    """The dead letter reason of a message past its delivery limit, with the last error if one is known."""
    if not last_error:
        return DELIVERY_LIMIT_EXCEEDED
    return f"{DELIVERY_LIMIT_EXCEEDED}; last error: {truncate(last_error, LAST_ERROR_MAX)}"


#: characters of each value ``dead_letter_headers`` writes: the reason, and the names (error type, queue,
#: routing key; AMQP short strings are at most 255 bytes anyway). A header larger than the broker's frame
#: (131,072 bytes) makes it close the connection (FRAME_ERROR), so every header built from input is bounded.
DEAD_LETTER_REASON_MAX = 1000
DEAD_LETTER_NAME_MAX = 255
DEAD_LETTER_STACK_MAX = 2000
#: bytes of encoded headers a dead-letter copy may carry in all (the original's and ours): under the
#: RabbitMQ frame (131,072 bytes) with room for the other properties; the embedded transport keeps the same
DEAD_LETTER_HEADERS_MAX = 120 * 1024
#: the header that says which of the original's headers a dead-letter copy left out to stay under that bound
HEADER_DROPPED_HEADERS = "x-esb-dropped-headers"


def _text(value: object, limit: int) -> str:
    """``value`` as bounded text: a caller may pass anything (bytes from the wire, an exception)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return truncate(value if isinstance(value, str) else str(value), limit)


def dead_letter_headers(
    *, reason: str, error_type: str, queue: str, routing_key: str, stack: str = ""
) -> dict[str, HeaderValue]:
    """The headers every transport adds to a message it moves to the dead letter channel.

    Every value is bounded whatever the caller passes (the reason to ``DEAD_LETTER_REASON_MAX``
    characters, the others to ``DEAD_LETTER_NAME_MAX``, cut with ``TRUNCATED``), so these headers
    take at most about 14 kB encoded. ``stack`` (if any) keeps its last ``DEAD_LETTER_STACK_MAX``
    characters: the innermost frames say where it failed.
    """
    headers: dict[str, HeaderValue] = {}
    if stack:
        headers[HEADER_ERROR_STACK] = str(stack)[-DEAD_LETTER_STACK_MAX:]
    return headers | {
        HEADER_ERROR_REASON: _text(reason, DEAD_LETTER_REASON_MAX),
        HEADER_ERROR_TYPE: _text(error_type, DEAD_LETTER_NAME_MAX),
        HEADER_FAILED_QUEUE: _text(queue, DEAD_LETTER_NAME_MAX),
        HEADER_FAILED_AT: datetime.now(UTC).isoformat(),
        HEADER_ORIGINAL_ROUTING_KEY: _text(routing_key, DEAD_LETTER_NAME_MAX),
    }


def fit_headers(
    original: Mapping[Any, Any],
    added: Mapping[str, HeaderValue],
    *,
    size_of: Callable[[Any, Any], int],
    budget: int = DEAD_LETTER_HEADERS_MAX,
) -> dict[Any, Any]:
    """The headers of a dead-letter copy: the original's and ``added`` (which win), at most ``budget``
    bytes as ``size_of(key, value)`` counts them (the transport's encoding of one entry).

    The original's entries are left out largest first until the rest fits; an entry ``size_of``
    cannot measure (raises) is left out too. What was left out is named (bounded) in
    ``HEADER_DROPPED_HEADERS``. ``added`` is always kept: it is bounded (``dead_letter_headers``).
    """

    def measured(key: Any, value: Any) -> int:
        try:
            return size_of(key, value)
        except Exception:  # not encodable by this transport: it cannot go into the copy at all
            return budget + 1

    kept = {key: value for key, value in original.items() if key not in added}
    sizes = {key: measured(key, value) for key, value in kept.items()}
    # room for ours and for the marker header (at most 400 characters, 4 bytes each in UTF-8)
    room = budget - sum(size_of(key, value) for key, value in added.items()) - 1700
    total = sum(sizes.values())
    dropped: list[Any] = []
    for key in sorted(sizes, key=lambda k: sizes[k], reverse=True):
        if total <= room:
            break
        del kept[key]
        total -= sizes[key]
        dropped.append(key)
    headers: dict[Any, Any] = {**kept, **added}
    if dropped:
        names = ", ".join(_text(key, 40) for key in dropped[:10])
        headers[HEADER_DROPPED_HEADERS] = _text(
            f"{len(dropped)} header(s) of the original left out to stay under {budget} bytes: {names}", 400
        )
    return headers


def read_attempts(headers: Mapping[str, HeaderValue]) -> int:
    """Transient failures before this delivery, from ``HEADER_ATTEMPTS``: 0 when absent or not a count
    (a publisher's ``"abc"`` or ``-3``), at most ``ATTEMPTS_MAX``."""
    value = headers.get(HEADER_ATTEMPTS)
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.isdigit() and len(value) <= 6:
        value = int(value)
    if isinstance(value, int) and value > 0:
        return min(value, ATTEMPTS_MAX)
    return 0


def retry_headers(headers: Mapping[str, HeaderValue], *, attempts: int, last_error: str) -> dict[str, HeaderValue]:
    """The headers of a message's retry copy: its own (``headers``) with the attempt count and the last
    error (at most ``LAST_ERROR_MAX`` characters) replaced."""
    return {
        **{k: v for k, v in headers.items() if k not in (HEADER_ATTEMPTS, HEADER_LAST_ERROR)},
        HEADER_ATTEMPTS: attempts,
        HEADER_LAST_ERROR: _text(last_error, LAST_ERROR_MAX),
    }


def shard_of(key: str, shards: int) -> int:
    """The shard (0 .. ``shards`` - 1) that ``key`` belongs to on the embedded transport: stable across
    processes and versions (CRC-32 of its UTF-8 bytes; RabbitMQ's consistent-hash exchange uses its own)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards if shards > 1 else 0


@dataclass(frozen=True)
class QueueSpec:
    """One route's queue and the routing-key patterns (topic syntax: ``*`` one word, ``#`` any) bound to it.

    ``delivery_limit``: the broker's redeliveries (connection lost, consumer killed) before it dead-letters
    the message by itself; a backstop: the consumer counts tries itself (retry schedule, attempt journal).
    ``shards`` > 1: the queue is ``shards`` queues ``<name>.0`` .. ``<name>.<shards-1>``; a message goes to
    one of them by its partition key (``HEADER_PARTITION_KEY``), so one customer's events stay in one.
    Every route queue has a single active consumer (``exclusive``): its messages are handled in order.
    """

    name: str
    bindings: tuple[str, ...]
    delivery_limit: int = 100
    shards: int = 1
    exclusive: bool = True

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The queues to consume: the name itself, or one per shard."""
        if self.shards <= 1:
            return (self.name,)
        return tuple(f"{self.name}.{index}" for index in range(self.shards))


@dataclass(frozen=True)
class Topology:
    """Everything a transport declares: one topic exchange, the routes' queues, one dead letter channel.

    ``dead_letter_subscribers`` are queues of their own on the dead letter exchange (fanout, their
    bindings are ignored): each gets a copy of every dead letter, next to the dead letter queue, so a
    route that reacts to failures competes with no other reader. A subscriber's own dead letters go to
    ``final_dead_letter_exchange``, bound to the dead letter queue only, so they never come back to it.
    """

    queues: tuple[QueueSpec, ...] = ()
    dead_letter_subscribers: tuple[QueueSpec, ...] = ()
    exchange: str = "esb.events"
    dead_letter_exchange: str = "esb.dlx"
    dead_letter_queue: str = "esb.dead_letter"
    #: the delays (seconds) of every retry step any route uses (``Delivery.retry`` takes one of them)
    retry_delays: tuple[float, ...] = ()
    #: RabbitMQ: the headers exchange in front of the retry step queues
    retry_exchange: str = "esb.retry"

    def queue(self, name: str) -> QueueSpec:
        """The spec of a queue by its name, or by the name of one of its shards."""
        for spec in (*self.queues, *self.dead_letter_subscribers):
            if spec.name == name or name in spec.queue_names:
                return spec
        raise KeyError(name)

    def retry_queue(self, delay: float) -> str:
        """The name of the retry step queue for ``delay`` seconds (RabbitMQ): ``<retry_exchange>.<ms>ms``."""
        return f"{self.retry_exchange}.{delay_ms(delay)}ms"

    @property
    def final_dead_letter_exchange(self) -> str:
        """Fanout exchange bound to the dead letter queue only: the dead letter channel of the subscribers."""
        return f"{self.dead_letter_exchange}.final"


def delay_ms(delay: float) -> int:
    """A retry delay in whole milliseconds (at least 1), as step queues and headers carry it."""
    return max(1, round(delay * 1000))


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish.

    ``partition_key``: what keeps messages in order across competing consumers (the envelope's
    subject, i.e. the customer key); ``None`` when the message has none (the message id then serves).
    """

    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    content_type: str = "application/cloudevents+json"
    partition_key: str | None = None


#: how many distinct routing keys an ``Unroutable`` message names, and how many characters of each
_UNROUTABLE_KEYS_SHOWN = 5
_ROUTING_KEY_SHOWN = 255


def unroutable(messages: Sequence[OutgoingMessage], *, exchange: str, system: str) -> Unroutable:
    """The error a transport raises for the ``messages`` of a batch that no queue is bound to.

    The text names the exchange and at most five routing keys (each cut to 255 characters, marked
    with "..."), so it stays small whatever the batch; ``message_ids`` names every message, once each.
    """
    keys = list(dict.fromkeys(m.routing_key for m in messages))
    shown = [k if len(k) <= _ROUTING_KEY_SHOWN else k[:_ROUTING_KEY_SHOWN] + "..." for k in keys]
    listed = ", ".join(repr(k) for k in shown[:_UNROUTABLE_KEYS_SHOWN])
    if len(keys) > _UNROUTABLE_KEYS_SHOWN:
        listed += f" and {len(keys) - _UNROUTABLE_KEYS_SHOWN} more"
    text = f"unroutable: no queue is bound on exchange {exchange!r} to routing key {listed}"
    return Unroutable(
        f"{text} ({len(messages)} message(s))",
        message_ids=tuple(dict.fromkeys(m.message_id for m in messages)),
        system=system,
        operation="publish",
    )


@dataclass(frozen=True)
class DeathRecord:
    """One dead-lettering done by the broker itself (RabbitMQ's ``x-death`` entry), bounded.

    ``reason``: ``rejected``, ``expired``, ``maxlen`` or ``delivery_limit``; ``count``: how often the
    message died this way in ``queue``; ``time``: when it last did (UTC), if the broker said.
    """

    reason: str
    queue: str
    count: int
    time: datetime | None = None


class Delivery(ABC):
    """A message handed to a consumer. Exactly one of ack / requeue / dead_letter must be called."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: Mapping[str, HeaderValue]
    queue: str
    #: how many times this message was delivered before (0 on the first delivery)
    previous_deliveries: int
    #: whether ack / requeue / dead_letter was called
    settled: bool
    #: the broker's own dead-letterings of this message, most recent first (none on the embedded transport)
    deaths: tuple[DeathRecord, ...] = ()
    #: tries of this message that failed transiently before this delivery (``HEADER_ATTEMPTS``; 0 at first)
    attempts: int = 0

    @abstractmethod
    def ack(self) -> None:
        """Processing succeeded: forget the message."""

    @abstractmethod
    def requeue(self, last_error: str = "") -> None:
        """Processing failed transiently: deliver again later; counts towards the queue's delivery limit.

        Past the limit the message is dead-lettered with ``delivery_limit_reason(last_error)``.
        """

    @abstractmethod
    def dead_letter(self, reason: str, error_type: str, stack: str = "") -> None:
        """Processing can never succeed: move the message to the dead letter channel with the reason (and
        the error's ``stack``, if there is one: ``HEADER_ERROR_STACK``)."""

    @abstractmethod
    def retry(self, delay: float, last_error: str) -> None:
        """Processing failed transiently: deliver the message again, to this same queue (shard), not before
        ``delay`` seconds from now, as try ``attempts + 1`` (``HEADER_ATTEMPTS``, ``HEADER_LAST_ERROR`` set by
        ``retry_headers``). Nothing waits in the caller's thread. Not a redelivery: it does not count towards
        the delivery limit.

        RabbitMQ: a confirmed copy goes through the retry step queue of ``delay`` (one of the topology's
        ``retry_delays``, else ``ValueError``), then the original is acked. Embedded: the same row becomes
        ready again at now + ``delay``.
        """

    def return_unprocessed(self) -> None:
        """Give the message back without having tried it (the consumer is stopping, or its route paused):
        the transport does not count it as a try where it can avoid it."""
        self.requeue()


DeliveryHandler = Callable[[Delivery], None]


def dispatch(handler: DeliveryHandler, delivery: Delivery) -> None:
    """Run ``handler`` for a transport's consume loop: whatever it does, the loop goes on and the
    delivery ends up settled (a handler that forgot to settle, or raised, gets a requeue)."""
    try:
        handler(delivery)
    except Exception:
        log.exception("delivery handler failed", queue=delivery.queue, message_id=delivery.message_id)
    if not delivery.settled:
        log.error("delivery left unsettled; requeueing", queue=delivery.queue, message_id=delivery.message_id)
        try:
            delivery.requeue()
        except Exception:  # the connection or lease is gone: the message comes back by itself
            log.exception("could not requeue", queue=delivery.queue, message_id=delivery.message_id)


class Transport(ABC):
    """A durable message transport. Implementations: ``rabbitmq``, ``embedded``."""

    name: str

    @abstractmethod
    def declare(self, topology: Topology) -> None:
        """Create exchange, queues, bindings and the dead letter channel; idempotent."""

    @abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish to the topology's exchange; returns only once every message is durably taken.

        Raises ``Unroutable`` (a ``PermanentError``) naming the messages that no queue is bound to,
        once every *other* message of the batch is durably taken: the caller marks those done and
        keeps the named ones aside (publishing them again fails the same way until a route is bound).
        Raises ``TransportError`` if any message was not confirmed (or the connection was lost);
        the caller then publishes them all again (consumers are idempotent).
        """

    @abstractmethod
    def consume(
        self,
        queue: str,
        handler: DeliveryHandler,
        *,
        stop: threading.Event,
        prefetch: int = 50,
        concurrency: int = 1,
        executor: Executor | None = None,
    ) -> None:
        """Deliver messages from ``queue`` to ``handler`` until ``stop`` is set; returns then, once the
        handlers that run have finished (unstarted deliveries are given back unprocessed, ahead of the
        queue's other messages: a consumer that takes an ``exclusive`` queue over gets them first).

        This thread keeps the connection (heartbeats, leases); handlers run in an executor of
        ``concurrency`` threads, in the order the messages came (with 1, one after the other), and may take
        longer than a heartbeat or lease. With ``executor`` (the caller's, shared by the consumers of one
        route's shards, so that a route's concurrency holds whatever shards it consumes) handlers run
        there instead, submitted in the order the messages came, and ``concurrency`` is ignored. A
        delivery is settled from the handler's thread; the transport makes that safe. A delivery whose
        connection or lease is gone before its handler started is not handed to it. On an ``exclusive``
        queue, one consumer at a time gets messages.
        """

    @abstractmethod
    def send_to_queue(self, queue: str, message: OutgoingMessage) -> None:
        """Publish ``message`` to ``queue`` (a queue or shard) only, never through the topology's exchange:
        the replay of a failure that the other routes bound to its event type have already handled.
        Returns once it is durably taken; the consumer sees ``message.routing_key`` as its routing key.
        RabbitMQ: the default exchange (routing key = the queue), confirmed, with ``HEADER_REPLAY_OF`` and
        ``HEADER_ORIGINAL_ROUTING_KEY`` telling the delivery its routing key. Raises ``Unroutable`` if
        there is no such queue, ``TransportError`` if it was not confirmed."""

    @abstractmethod
    def get(self, queue: str) -> Delivery | None:
        """Take one message from ``queue`` if there is one (for tools and tests); the caller must settle it."""

    @abstractmethod
    def message_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting unacknowledged ones)."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Drop every ready message of ``queue``; returns how many."""

    def close(self) -> None:
        """Release connections; the default has nothing to release."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = [
    "ATTEMPTS_MAX",
    "DEAD_LETTER_HEADERS_MAX",
    "DEAD_LETTER_NAME_MAX",
    "DEAD_LETTER_REASON_MAX",
    "DEAD_LETTER_STACK_MAX",
    "DELIVERY_LIMIT_EXCEEDED",
    "HEADER_ATTEMPTS",
    "HEADER_DROPPED_HEADERS",
    "HEADER_ERROR_REASON",
    "HEADER_ERROR_STACK",
    "HEADER_ERROR_TYPE",
    "HEADER_FAILED_AT",
    "HEADER_FAILED_QUEUE",
    "HEADER_LAST_ERROR",
    "HEADER_ORIGINAL_ROUTING_KEY",
    "HEADER_PARTITION_KEY",
    "HEADER_REPLAY_OF",
    "HEADER_RETRY_DELAY",
    "LAST_ERROR_MAX",
    "DeathRecord",
    "Delivery",
    "DeliveryHandler",
    "HeaderValue",
    "OutgoingMessage",
    "QueueSpec",
    "Topology",
    "Transport",
    "dead_letter_headers",
    "delay_ms",
    "delivery_limit_reason",
    "dispatch",
    "fit_headers",
    "read_attempts",
    "retry_headers",
    "shard_of",
    "unroutable",
]
