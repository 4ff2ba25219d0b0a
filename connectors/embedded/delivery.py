"""A message claimed from the embedded transport, and how it is settled."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from connectors.base import (
    HEADER_ATTEMPTS,
    HEADER_LAST_ERROR,
    Delivery,
    delivery_limit_reason,
    fit_headers,
    read_attempts,
    retry_headers,
)
from connectors.embedded.store import Claimed, LeaseLost, QueueInfo, Store, json_size


class EmbeddedDelivery(Delivery):
    """One hand-over of a claimed row. ``previous_deliveries``: hand-overs before this one (see
    ``connectors.embedded.store``); ``attempts``: ``read_attempts`` of its headers."""

    def __init__(
        self,
        store: Store,
        message: Claimed,
        info: QueueInfo,
        *,
        previous_deliveries: int,
        on_requeue: Callable[[], None],
    ) -> None:
        self.body = message.body
        self.routing_key = message.routing_key
        self.message_id = message.message_id
        self.headers = message.headers
        self.queue = message.queue
        self.previous_deliveries = previous_deliveries
        self.attempts = read_attempts(message.headers)
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
        self._settle(lambda: self._store.put_back(self.claimed, deliveries=self.previous_deliveries + 1))
        self._on_requeue()

    def return_unprocessed(self) -> None:
        """Ready again at once, this hand-over not counted (the handler did not try it)."""
        self._settle(lambda: self._store.put_back(self.claimed, deliveries=self.previous_deliveries))
        self._on_requeue()

    def retry(self, delay: float, last_error: str) -> None:
        """The same row, ready again ``delay`` seconds (>= 0, finite; else ``ValueError``) from now, as try
        ``attempts + 1``; headers bounded as a dead-letter copy's (``fit_headers``). Not counted as a delivery."""
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"a retry delay is a finite number of seconds >= 0, not {delay!r}")
        ours = retry_headers({}, attempts=self.attempts + 1, last_error=last_error)
        headers = fit_headers(
            {k: v for k, v in self.headers.items() if k not in (HEADER_ATTEMPTS, HEADER_LAST_ERROR)},
            ours,
            size_of=json_size,
        )
        not_before = time.time() + delay
        self._settle(
            lambda: self._store.put_back(
                self.claimed, deliveries=self.previous_deliveries, not_before=not_before, headers=headers
            )
        )
        if delay == 0:
            self._on_requeue()

    def dead_letter(self, reason: str, error_type: str, stack: str = "") -> None:
        self._settle(lambda: self._store.dead_letter(self.claimed, self._info, reason, error_type, stack))

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
