"""Issue 6: each settled message is logged once, with its id, queue (route) and outcome, fields bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog

from canonical_model.envelope import Envelope
from canonical_model.errors import BackOfficeUnavailable, BusinessRejection
from connectors.consumer import settle
from tests.connectors.test_consumer import VALID, RecordingDelivery


def _fail(exc: Exception) -> Callable[[Envelope], None]:
    def handler(envelope: Envelope) -> None:
        raise exc

    return handler


CASES: list[tuple[str, bytes, Callable[[Envelope], None], str, str]] = [
    ("returns", VALID, lambda envelope: None, "acked", "info"),
    ("permanent", VALID, _fail(BusinessRejection("credit block", code="CREDIT_BLOCK")), "dead_lettered", "warning"),
    ("not an envelope", b"{not json", lambda envelope: None, "dead_lettered", "warning"),
    ("transient", VALID, _fail(BackOfficeUnavailable("ERP answered HTTP 503")), "retried", "info"),
    ("a bug", VALID, _fail(KeyError("VBELN")), "retried", "error"),
]


@pytest.mark.parametrize("body,handler,outcome,level", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_log_line_per_settlement(
    body: bytes, handler: Callable[[Envelope], None], outcome: str, level: str
) -> None:
    delivery = RecordingDelivery(body, previous_deliveries=2)
    with structlog.testing.capture_logs() as logs:
        assert settle(delivery, handler) == outcome
    settled = [entry for entry in logs if entry["event"] == "message settled"]
    assert len(settled) == 1, logs
    assert len(logs) == 1, "the settlement line is the only line: no second line for the same message"
    line: dict[str, Any] = settled[0]
    assert (line["message_id"], line["queue"], line["outcome"], line["delivery"]) == (
        "m-1",
        "esb.erp.order_placed",
        outcome,
        3,
    )
    assert line["log_level"] == level
    if outcome != "acked":
        assert line["error_type"] and line["reason"]


def test_the_logged_message_fields_are_bounded() -> None:
    delivery = RecordingDelivery(VALID)
    delivery.message_id = "m" * 10_000
    with structlog.testing.capture_logs() as logs:
        settle(delivery, _fail(BusinessRejection("x" * 100_000, code="INVALID")))
    (line,) = logs
    assert len(line["message_id"]) < 400 and line["message_id"].endswith("more chars]")
    assert len(line["reason"]) < 400
    assert (
        delivery.outcome[1] == "x" * 100_000
    )  # the dead letter itself keeps the reason (its own bound is the transport's)
