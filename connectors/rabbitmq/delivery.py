"""A message taken from a RabbitMQ queue, and how it is settled.

Everything a delivery reads comes from the wire and is read defensively: a publisher sets any
header it likes (``x-delivery-count: "abc"``), a short string that is no UTF-8 arrives as bytes,
and none of it may raise in the consume loop (the connection would be lost and every prefetched
message would burn a delivery). The dead-letter copy carries the original's headers and ours
within ``DEAD_LETTER_HEADERS_MAX`` bytes, so it always fits the broker's frame; so does a retry copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from typing import Any

import pika
import pika.data
import structlog

from canonical_model.truncation import truncate
from connectors.base import (
    HEADER_ATTEMPTS,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REPLAY_OF,
    HEADER_RETRY_DELAY,
    Delivery,
    HeaderValue,
    dead_letter_headers,
    delay_ms,
    delivery_limit_reason,
    fit_headers,
    read_attempts,
    retry_headers,
)
from connectors.rabbitmq.deaths import X_DEATH, parse_x_death, well_formed
from connectors.rabbitmq.errors import translated
from connectors.rabbitmq.publisher import PERSISTENT

log = structlog.get_logger(__name__)

#: runs one settle operation (its name, the pika calls) where the delivery's channel may be used, and
#: raises ``TransportError`` if it fails; see ``RabbitMQDelivery``
Settler = Callable[[str, Callable[[], None]], None]
#: bytes an AMQP short string (routing key) holds
SHORT_STRING_MAX = 255

#: quorum queues count deliveries in this header (0 on the first one)
DELIVERY_COUNT = "x-delivery-count"
#: properties a dead-lettered copy keeps (user_id would be checked against our login, expiration would drop it)
_KEPT_PROPERTIES = ("content_type", "content_encoding", "correlation_id", "message_id", "timestamp", "type", "app_id")


#: a delivery count above this is no count the broker keeps
COUNT_MAX = 10**9


def wire_text(value: Any) -> str | None:
    """A short string property (routing key, message id) as text: pika leaves one that is no UTF-8 as bytes."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def previous_deliveries(headers: Mapping[Any, Any], redelivered: bool) -> int:
    """How often the broker delivered this message before: 0 unless it says ``redelivered``; then its
    ``x-delivery-count`` (quorum queues set it on every redelivery), or 1 if that is no count.

    On a first delivery the header, if any, is the publisher's: it is ignored, whatever it holds.
    """
    if not redelivered:
        return 0
    count = headers.get(DELIVERY_COUNT)
    if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= COUNT_MAX:
        return count
    return 1


def plain_headers(headers: Mapping[Any, Any]) -> dict[str, HeaderValue]:
    """AMQP headers as the contract's ``str | int`` values (tables and lists as text; x-death is also read as
    ``Delivery.deaths``, see ``deaths``). Keys that are no UTF-8 are decoded with replacement characters."""
    plain: dict[str, HeaderValue] = {}
    for key, value in headers.items():
        name = wire_text(key) or ""
        if isinstance(value, bool):
            plain[name] = int(value)
        elif isinstance(value, str):
            plain[name] = value
        elif isinstance(value, int):
            plain[name] = int(value)
        elif isinstance(value, bytes):
            plain[name] = value.decode("utf-8", "replace")
        elif value is not None:
            plain[name] = str(value)
    return plain


def encoded_size(key: Any, value: Any) -> int:
    """Bytes one header entry takes in an AMQP field table; raises if pika cannot encode it, or if it is an
    ``x-death`` the broker did not write (see ``deaths.well_formed``): either is left out of a copy."""
    if key == X_DEATH and not well_formed(value):
        raise ValueError("an x-death header the broker did not write")
    size: int = pika.data.encode_table([], {key: value})
    return size - 4


def x_death_names(value: Any, queue: str) -> bool:
    """Whether a (well-formed) ``x-death`` value has an entry for ``queue``.

    The broker drops a message it dead-letters into a queue that its ``x-death`` already names (with
    no ``rejected`` entry after it: "a cycle"), silently. A retry copy expires from its step queue into
    the queue it came from: if that queue is named there (a replayed dead letter of that queue), the
    copy would be dropped, so it goes without its ``x-death``.
    """
    if not well_formed(value):
        return False
    return any(entry.get("queue") == queue for entry in value)


def came_through_retry(exchange: Any, headers: Mapping[Any, Any]) -> str | None:
    """The original routing key of a message that a retry step dead-lettered back to its queue (through
    the default exchange, with ``HEADER_RETRY_DELAY`` and ``HEADER_ORIGINAL_ROUTING_KEY``), or that was
    replayed straight to it (``HEADER_REPLAY_OF``), else None."""
    if wire_text(exchange) != "" or (HEADER_RETRY_DELAY not in headers and HEADER_REPLAY_OF not in headers):
        return None
    original = wire_text(headers.get(HEADER_ORIGINAL_ROUTING_KEY))
    return truncate(original, SHORT_STRING_MAX) if isinstance(original, str) and original else None


class RabbitMQDelivery(Delivery):
    """Settled on the channel it came from; that channel is in confirm mode, for the dead letter and retry
    copies.

    ``settler`` runs each settle operation where that channel may be used: a consumer's deliveries are
    settled from handler threads, and the consumer marshals each operation onto its connection's thread
    (``add_callback_threadsafe``) and waits for it; without a settler the operation runs in the calling
    thread, under ``lock`` if given. Either way a failure raises ``TransportError``.

    ``retry_exchange`` / ``retry_delays``: the topology's retry exchange and its steps in milliseconds
    (``Delivery.retry`` takes one of them).
    """

    def __init__(
        self,
        channel: Any,
        method: Any,
        properties: Any,
        body: bytes,
        *,
        queue: str,
        dead_letter_exchange: str,
        delivery_limit: int | None,
        lock: threading.RLock | None = None,
        retry_exchange: str = "",
        retry_delays: Collection[int] = (),
        settler: Settler | None = None,
    ) -> None:
        raw_headers = properties.headers
        self._raw_headers: dict[Any, Any] = dict(raw_headers) if isinstance(raw_headers, Mapping) else {}
        self.body = body
        self._wire_routing_key = method.routing_key  # as it came: its text form may not fit a short string
        self.routing_key = wire_text(method.routing_key) or ""
        original = came_through_retry(method.exchange, self._raw_headers)
        if original is not None:  # back from a retry step: its routing key there was the queue's name
            self.routing_key = original
            if len(original.encode("utf-8")) <= SHORT_STRING_MAX:
                self._wire_routing_key = original
        self.message_id = wire_text(properties.message_id)
        self.headers = plain_headers(self._raw_headers)
        self.queue = queue
        self.previous_deliveries = previous_deliveries(self._raw_headers, bool(method.redelivered))
        self.attempts = read_attempts(self.headers)
        self.deaths = parse_x_death(self._raw_headers.get(X_DEATH))
        self._channel = channel
        self._tag = method.delivery_tag
        self._properties = properties
        self._dead_letter_exchange = dead_letter_exchange
        self._delivery_limit = delivery_limit
        self._retry_exchange = retry_exchange
        self._retry_delays = frozenset(retry_delays)
        self._lock = lock
        self._settler = settler
        self.settled = False

    def ack(self) -> None:
        self._settle("ack", lambda: self._channel.basic_ack(self._tag))

    def requeue(self, last_error: str = "") -> None:
        if self._delivery_limit is not None and self.previous_deliveries + 1 > self._delivery_limit:
            # The broker would dead-letter it at this very return too, but only with x-death;
            # doing it here puts the same reason headers on it as every other dead letter.
            self.dead_letter(delivery_limit_reason(last_error), "DeliveryLimitExceeded")
            return
        # reject, not nack: from RabbitMQ 4.3 only reject counts towards the delivery limit
        self._settle("requeue", lambda: self._channel.basic_reject(self._tag, requeue=True))

    def return_unprocessed(self) -> None:
        """Give the message back without having tried it (the consumer is stopping)."""
        # nack: from RabbitMQ 4.3 this is not counted as a delivery attempt (on 3.10 it is)
        self._settle("return", lambda: self._channel.basic_nack(self._tag, requeue=True))

    def dead_letter(self, reason: str, error_type: str, stack: str = "") -> None:
        # without the route's try count: a dead-letter subscriber starts its own retry schedule at its first try
        left_out = (DELIVERY_COUNT, HEADER_ATTEMPTS)
        original = {key: value for key, value in self._raw_headers.items() if key not in left_out}
        ours = dead_letter_headers(
            reason=reason, error_type=error_type, queue=self.queue, routing_key=self.routing_key, stack=stack
        )
        # the original's headers may fill a frame by themselves: ours must not push the copy past it
        headers = fit_headers(original, ours, size_of=encoded_size)
        self._settle(
            "dead_letter", lambda: self._copy_then_ack(self._dead_letter_exchange, self._wire_routing_key, headers)
        )

    def retry(self, delay: float, last_error: str) -> None:
        """A confirmed copy to the retry step of ``delay`` seconds (``ValueError`` unless the topology
        declared that step), routed by the name of this delivery's queue (back there when it expires);
        then the original is acked. ``TransportError`` if either fails (the original then comes back)."""
        milliseconds = delay_ms(delay)
        if milliseconds not in self._retry_delays:
            steps = ", ".join(f"{step / 1000:g}" for step in sorted(self._retry_delays)) or "none"
            raise ValueError(f"no retry step of {delay:g} s is declared (steps in seconds: {steps})")
        original = {key: value for key, value in self._raw_headers.items() if key != DELIVERY_COUNT}
        if x_death_names(original.get(X_DEATH), self.queue):
            log.info("retry copy leaves its x-death out (it names its own queue)", queue=self.queue)
            del original[X_DEATH]
        ours: dict[str, HeaderValue] = {
            **retry_headers({}, attempts=self.attempts + 1, last_error=last_error),
            HEADER_RETRY_DELAY: milliseconds,
        }
        if HEADER_ORIGINAL_ROUTING_KEY not in original:
            ours[HEADER_ORIGINAL_ROUTING_KEY] = truncate(self.routing_key, SHORT_STRING_MAX)
        headers = fit_headers(original, ours, size_of=encoded_size)
        self._settle("retry", lambda: self._copy_then_ack(self._retry_exchange, self.queue, headers))

    def _copy_then_ack(self, exchange: str, routing_key: Any, headers: dict[Any, Any]) -> None:
        kept = {name: getattr(self._properties, name) for name in _KEPT_PROPERTIES}
        copy = pika.BasicProperties(delivery_mode=PERSISTENT, headers=headers, **kept)
        # confirm channel: returns once the broker has the copy (raises if unroutable or nacked) ...
        self._channel.basic_publish(exchange, routing_key, self.body, copy, mandatory=True)
        # ... and only then is the original dropped: at least once, never lost
        self._channel.basic_ack(self._tag)

    def _settle(self, operation: str, action: Callable[[], None]) -> None:
        if self.settled:
            raise RuntimeError(f"delivery {self.message_id} of {self.queue} is already settled")
        if self._settler is not None:
            self._settler(operation, action)
        else:
            with self._lock or nullcontext(), translated(operation):
                action()
        self.settled = True


__all__ = [
    "DELIVERY_COUNT",
    "RabbitMQDelivery",
    "Settler",
    "came_through_retry",
    "encoded_size",
    "plain_headers",
    "previous_deliveries",
    "wire_text",
    "x_death_names",
]
