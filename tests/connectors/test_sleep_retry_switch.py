"""The ``sleep_retry`` safeguard switch (tests only) is the old retry as it was: a pause in the consumer
thread (``requeue_pause`` doubling to ``requeue_pause_max``), a requeue, and the old route queues'
delivery limit of 5 (the queues' own limit is now a backstop of 100): so a test that switches it off
sees the dead letter the old code made, with its ``dead_lettered`` log line."""

from __future__ import annotations

import time

import pytest
import structlog

from canonical_model.envelope import Envelope
from canonical_model.errors import BackOfficeUnavailable
from connectors.consumer import OLD_DELIVERY_LIMIT, DeliveryPolicy, settle
from tests.connectors.recording import RecordingDelivery

VALID = Envelope.new("order.placed", {"id": "SO-1"}, source="/crm").to_bytes()


def _down(envelope: Envelope) -> None:
    raise BackOfficeUnavailable("ERP answered HTTP 503", system="erp", operation="CreateSalesOrder")


@pytest.mark.parametrize("previous", range(OLD_DELIVERY_LIMIT + 1))
def test_the_old_retry_pauses_requeues_and_dead_letters_past_the_old_delivery_limit(previous: int) -> None:
    policy = DeliveryPolicy(sleep_retry=True, requeue_pause=0.001, requeue_pause_max=0.004)
    delivery = RecordingDelivery(VALID, previous_deliveries=previous)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        outcome = settle(delivery, _down, policy)
    assert time.monotonic() - started >= min(0.004, 0.001 * 2**previous)
    if previous < OLD_DELIVERY_LIMIT:
        assert (outcome, delivery.outcome[0]) == ("requeued", "requeue")
    else:
        assert outcome == "dead_lettered"
        assert delivery.outcome[0] == "dead_letter" and delivery.outcome[2] == "DeliveryLimitExceeded"
        assert str(delivery.outcome[1]).startswith("delivery limit exceeded; last error: ")
        assert [line["outcome"] for line in logs if line["event"] == "message settled"] == ["dead_lettered"]
