"""A delivery that records how it was settled, for tests of the ack decision (no transport behind it)."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import DeathRecord, Delivery, HeaderValue


class RecordingDelivery(Delivery):
    """``outcome`` is ``("ack",)``, ``("requeue", last_error)``, ``("retry", delay, last_error)``,
    ``("return",)`` or ``("dead_letter", reason, error_type)``."""

    def __init__(
        self,
        body: bytes = b"{}",
        previous_deliveries: int = 0,
        *,
        headers: Mapping[str, HeaderValue] | None = None,
        deaths: tuple[DeathRecord, ...] = (),
        routing_key: str = "order.placed",
        queue: str = "esb.erp.order_placed",
        attempts: int = 0,
    ) -> None:
        self.body = body
        self.routing_key = routing_key
        self.message_id = "m-1"
        self.headers = dict(headers or {})
        self.queue = queue
        self.previous_deliveries = previous_deliveries
        self.settled = False
        self.deaths = deaths
        self.attempts = attempts
        self.outcome: tuple[object, ...] = ()

    def ack(self) -> None:
        self.outcome, self.settled = ("ack",), True

    def requeue(self, last_error: str = "") -> None:
        self.outcome, self.settled = ("requeue", last_error), True

    def dead_letter(self, reason: str, error_type: str, stack: str = "") -> None:
        self.outcome, self.settled = ("dead_letter", reason, error_type), True

    def retry(self, delay: float, last_error: str) -> None:
        self.outcome, self.settled = ("retry", delay, last_error), True

    def return_unprocessed(self) -> None:
        self.outcome, self.settled = ("return",), True
