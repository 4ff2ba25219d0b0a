"""A message claimed from the embedded transport, and how it is settled."""

from __future__ import annotations

from collections.abc import Callable

from connectors.base import Delivery, delivery_limit_reason
from connectors.embedded.store import Claimed, LeaseLost, QueueInfo, Store


class EmbeddedDelivery(Delivery):
    def __init__(self, store: Store, message: Claimed, info: QueueInfo, *, on_requeue: Callable[[], None]) -> None:
        self.body = message.body
        self.routing_key = message.routing_key
        self.message_id = message.message_id
        self.headers = message.headers
        self.queue = message.queue
        self.previous_deliveries = message.deliveries - 1
        self.claimed = message
        self.settled = False
        self._store = store
        self._info = info
        self._on_requeue = on_requeue

    def ack(self) -> None:
        self._settle(lambda: self._store.ack(self.claimed))

    def requeue(self, last_error: str = "") -> None:
        limit = self._info.delivery_limit
        if limit is not None and self.previous_deliveries + 1 > limit:
            self.dead_letter(delivery_limit_reason(last_error), "DeliveryLimitExceeded")
            return
        self._settle(lambda: self._store.requeue(self.claimed))
        self._on_requeue()

    def dead_letter(self, reason: str, error_type: str) -> None:
        self._settle(lambda: self._store.dead_letter(self.claimed, self._info, reason, error_type))

    def _settle(self, action: Callable[[], None]) -> None:
        if self.settled:
            raise RuntimeError(f"delivery {self.message_id} of {self.queue} is already settled")
        try:
            action()
        except LeaseLost:
            self.settled = True  # someone else has the message now: nothing more this delivery can do
            raise
        self.settled = True


__all__ = ["EmbeddedDelivery"]
