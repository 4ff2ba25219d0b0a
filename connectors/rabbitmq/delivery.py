"""A message taken from a RabbitMQ queue, and how it is settled."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import pika

from connectors.base import Delivery, HeaderValue, dead_letter_headers, delivery_limit_reason
from connectors.rabbitmq.deaths import X_DEATH, parse_x_death
from connectors.rabbitmq.errors import translated
from connectors.rabbitmq.publisher import PERSISTENT

#: quorum queues count deliveries in this header (0 on the first one)
DELIVERY_COUNT = "x-delivery-count"
#: properties a dead-lettered copy keeps (user_id would be checked against our login, expiration would drop it)
_KEPT_PROPERTIES = ("content_type", "content_encoding", "correlation_id", "message_id", "timestamp", "type", "app_id")


def plain_headers(headers: Mapping[str, Any]) -> dict[str, HeaderValue]:
    """AMQP headers as the contract's ``str | int`` values (tables and lists as text; x-death is also read as
    ``Delivery.deaths``, see ``deaths``)."""
    plain: dict[str, HeaderValue] = {}
    for key, value in headers.items():
        if isinstance(value, bool):
            plain[key] = int(value)
        elif isinstance(value, str):
            plain[key] = value
        elif isinstance(value, int):
            plain[key] = int(value)
        elif isinstance(value, bytes):
            plain[key] = value.decode("utf-8", "replace")
        elif value is not None:
            plain[key] = str(value)
    return plain


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
        self._raw_headers: dict[str, Any] = dict(properties.headers or {})
        self.body = body
        self.routing_key = method.routing_key
        self.message_id = properties.message_id
        self.headers = plain_headers(self._raw_headers)
        self.queue = queue
        self.previous_deliveries = int(self._raw_headers.get(DELIVERY_COUNT) or 0)
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
            headers = {key: value for key, value in self._raw_headers.items() if key != DELIVERY_COUNT}
            headers.update(
                dead_letter_headers(
                    reason=reason, error_type=error_type, queue=self.queue, routing_key=self.routing_key
                )
            )
            kept = {name: getattr(self._properties, name) for name in _KEPT_PROPERTIES}
            copy = pika.BasicProperties(delivery_mode=PERSISTENT, headers=headers, **kept)
            # confirm channel: returns once the broker has the copy (raises if unroutable or nacked) ...
            self._channel.basic_publish(self._dead_letter_exchange, self.routing_key, self.body, copy, mandatory=True)
            # ... and only then is the original dropped: at least once, never lost
            self._channel.basic_ack(self._tag)

    @contextmanager
    def _settling(self, operation: str) -> Iterator[None]:
        if self.settled:
            raise RuntimeError(f"delivery {self.message_id} of {self.queue} is already settled")
        with self._lock or nullcontext(), translated(operation):
            yield
        self.settled = True


__all__ = ["DELIVERY_COUNT", "RabbitMQDelivery", "plain_headers"]
