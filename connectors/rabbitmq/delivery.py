"""A message taken from a RabbitMQ queue, and how it is settled.

Everything a delivery reads comes from the wire and is read defensively: a publisher sets any
header it likes (``x-delivery-count: "abc"``), a short string that is no UTF-8 arrives as bytes,
and none of it may raise in the consume loop (the connection would be lost and every prefetched
message would burn a delivery). The dead-letter copy carries the original's headers and ours
within ``DEAD_LETTER_HEADERS_MAX`` bytes, so it always fits the broker's frame.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import pika
import pika.data

from connectors.base import Delivery, HeaderValue, dead_letter_headers, delivery_limit_reason, fit_headers
from connectors.rabbitmq.deaths import X_DEATH, parse_x_death, well_formed
from connectors.rabbitmq.errors import translated
from connectors.rabbitmq.publisher import PERSISTENT

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


class RabbitMQDelivery(Delivery):
    """Settled on the channel it came from; that channel is in confirm mode, for the dead letter copy."""

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
    ) -> None:
        raw_headers = properties.headers
        self._raw_headers: dict[Any, Any] = dict(raw_headers) if isinstance(raw_headers, Mapping) else {}
        self.body = body
        self.routing_key = wire_text(method.routing_key) or ""
        self._wire_routing_key = method.routing_key  # as it came: its text form may not fit a short string
        self.message_id = wire_text(properties.message_id)
        self.headers = plain_headers(self._raw_headers)
        self.queue = queue
        self.previous_deliveries = previous_deliveries(self._raw_headers, bool(method.redelivered))
        self.deaths = parse_x_death(self._raw_headers.get(X_DEATH))
        self._channel = channel
        self._tag = method.delivery_tag
        self._properties = properties
        self._dead_letter_exchange = dead_letter_exchange
        self._delivery_limit = delivery_limit
        self._lock = lock
        self.settled = False

    def ack(self) -> None:
        with self._settling("ack"):
            self._channel.basic_ack(self._tag)

    def requeue(self, last_error: str = "") -> None:
        if self._delivery_limit is not None and self.previous_deliveries + 1 > self._delivery_limit:
            # The broker would dead-letter it at this very return too, but only with x-death;
            # doing it here puts the same reason headers on it as every other dead letter.
            self.dead_letter(delivery_limit_reason(last_error), "DeliveryLimitExceeded")
            return
        with self._settling("requeue"):
            # reject, not nack: from RabbitMQ 4.3 only reject counts towards the delivery limit
            self._channel.basic_reject(self._tag, requeue=True)

    def return_unprocessed(self) -> None:
        """Give the message back without having tried it (the consumer is stopping)."""
        with self._settling("return"):
            # nack: from RabbitMQ 4.3 this is not counted as a delivery attempt (on 3.10 it is)
            self._channel.basic_nack(self._tag, requeue=True)

    def dead_letter(self, reason: str, error_type: str) -> None:
        with self._settling("dead_letter"):
            original = {key: value for key, value in self._raw_headers.items() if key != DELIVERY_COUNT}
            ours = dead_letter_headers(
                reason=reason, error_type=error_type, queue=self.queue, routing_key=self.routing_key
            )
            # the original's headers may fill a frame by themselves: ours must not push the copy past it
            headers = fit_headers(original, ours, size_of=encoded_size)
            kept = {name: getattr(self._properties, name) for name in _KEPT_PROPERTIES}
            copy = pika.BasicProperties(delivery_mode=PERSISTENT, headers=headers, **kept)
            # confirm channel: returns once the broker has the copy (raises if unroutable or nacked) ...
            self._channel.basic_publish(
                self._dead_letter_exchange, self._wire_routing_key, self.body, copy, mandatory=True
            )
            # ... and only then is the original dropped: at least once, never lost
            self._channel.basic_ack(self._tag)

    @contextmanager
    def _settling(self, operation: str) -> Iterator[None]:
        if self.settled:
            raise RuntimeError(f"delivery {self.message_id} of {self.queue} is already settled")
        with self._lock or nullcontext(), translated(operation):
            yield
        self.settled = True


__all__ = ["DELIVERY_COUNT", "RabbitMQDelivery", "encoded_size", "plain_headers", "previous_deliveries", "wire_text"]
