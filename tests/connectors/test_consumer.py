"""The ack decision (connectors.consumer.settle) on a recording delivery: one rule per outcome."""

from __future__ import annotations

import pytest

from canonical_model.envelope import Envelope
from canonical_model.errors import BackOfficeUnavailable, BusinessRejection, MappingError
from connectors.consumer import DEFAULT_RETRY_SCHEDULE, DeliveryPolicy, settle
from tests.connectors.recording import RecordingDelivery

VALID = Envelope.new("order.placed", {"id": "SO-1"}, source="/crm").to_bytes()


def test_success_acks() -> None:
    seen: list[str] = []
    delivery = RecordingDelivery(VALID)
    assert settle(delivery, lambda envelope: seen.append(envelope.data["id"])) == "acked"
    assert (delivery.outcome, seen) == (("ack",), ["SO-1"])


@pytest.mark.parametrize("body", [b"{not json", b'{"type": "order.placed"}', b"[]"])
def test_a_body_that_is_not_an_envelope_is_dead_lettered_with_the_reason(body: bytes) -> None:
    delivery = RecordingDelivery(body)
    assert settle(delivery, lambda envelope: None) == "dead_lettered"
    kind, reason, error_type = delivery.outcome
    assert (kind, error_type) == ("dead_letter", "InvalidMessage")
    assert "not a valid envelope" in reason


@pytest.mark.parametrize(
    "error",
    [
        MappingError("lines[1].unit", "XYZ", "no ERP unit"),
        BusinessRejection("credit limit exceeded", code="CREDIT_BLOCK", system="erp"),
    ],
)
def test_permanent_errors_are_dead_lettered(error: Exception) -> None:
    def handler(envelope: Envelope) -> None:
        raise error

    delivery = RecordingDelivery(VALID)
    assert settle(delivery, handler) == "dead_lettered"
    assert delivery.outcome == ("dead_letter", str(error), type(error).__name__)


@pytest.mark.parametrize("error", [BackOfficeUnavailable("down", system="erp"), KeyError("a bug")])
@pytest.mark.parametrize("attempts", range(len(DEFAULT_RETRY_SCHEDULE)))
def test_transient_and_unexpected_errors_take_the_next_retry_step(error: Exception, attempts: int) -> None:
    """Issue 8: no pause in the consumer thread: the message moves to its next delayed retry at once."""

    def handler(envelope: Envelope) -> None:
        raise error

    delivery = RecordingDelivery(VALID, previous_deliveries=3, attempts=attempts)
    assert settle(delivery, handler) == "retried"
    kind, delay, last_error = delivery.outcome
    assert (kind, delay) == ("retry", DEFAULT_RETRY_SCHEDULE[attempts])
    assert str(error) in str(last_error), "the last error goes with the retry, for the final reason"


def test_after_the_last_retry_step_the_message_is_dead_lettered_with_its_last_error() -> None:
    def handler(envelope: Envelope) -> None:
        raise BackOfficeUnavailable("HTTP 503", system="erp", operation="CreateSalesOrder")

    policy = DeliveryPolicy(retry_schedule=(0.1, 0.2))
    delivery = RecordingDelivery(VALID, attempts=2)
    assert settle(delivery, handler, policy) == "dead_lettered"
    kind, reason, error_type = delivery.outcome
    assert (kind, error_type) == ("dead_letter", "RetriesExhausted")
    assert reason == "retries exhausted after 3 tries; last error: erp.CreateSalesOrder: HTTP 503"


def test_the_default_schedule_covers_a_ten_minute_outage() -> None:
    """Issue 8, point 4: an ERP down for ten minutes delays orders; it does not dead-letter them."""
    assert sum(DEFAULT_RETRY_SCHEDULE) >= 600
    assert list(DEFAULT_RETRY_SCHEDULE) == sorted(DEFAULT_RETRY_SCHEDULE)


@pytest.mark.parametrize("schedule", [(), (0.0,), (1.0,) * 21, (-1.0,)])
def test_a_retry_schedule_is_checked(schedule: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="1 to 20 steps"):
        DeliveryPolicy(retry_schedule=schedule)


# Issue 7, case 7: a route acts only on the types it is bound to (topic patterns, * one word, # any).


@pytest.mark.parametrize(
    ("kind", "accepts", "outcome"),
    [
        ("order.placed", ("order.placed",), "acked"),
        ("customer.created", ("order.placed",), "dead_lettered"),
        ("order.exploded", ("order.placed",), "dead_lettered"),
        ("order.confirmed", ("order.confirmed", "order.rejected"), "acked"),
        ("order.confirmed", ("order.*",), "acked"),
        ("order.line.added", ("order.*",), "dead_lettered"),
        ("order.line.added", ("order.#",), "acked"),
        ("customer.created", ("#",), "acked"),
    ],
)
def test_an_envelope_is_checked_against_the_routes_bindings_before_the_handler(
    kind: str, accepts: tuple[str, ...], outcome: str
) -> None:
    handled: list[str] = []
    delivery = RecordingDelivery(Envelope.new(kind, {"id": "SO-1"}, source="/crm").to_bytes())
    assert settle(delivery, lambda envelope: handled.append(envelope.type), accepts=accepts) == outcome
    if outcome == "dead_lettered":
        assert handled == [], "the handler never saw it"
        _, reason, error_type = delivery.outcome
        assert error_type == "InvalidMessage"
        assert f"of type {kind} does not match this route's bindings ({', '.join(accepts)})" in reason
    else:
        assert handled == [kind]


def test_the_worker_setting_for_the_largest_body_is_what_a_route_refuses_beyond() -> None:
    """``worker.max_message_bytes`` reaches the route's consumer: a body over it is dead-lettered unparsed."""
    from esb.config import WorkerSettings
    from flows.routes import Route

    seen: list[str] = []
    route = Route("erp.order_placed", ("order.placed",), lambda envelope: seen.append(envelope.id), "test")
    small = WorkerSettings(max_message_bytes=64 * 1024).max_message_bytes
    big = Envelope.new("order.placed", {"id": "SO-1", "note": "x" * small}, source="/crm").to_bytes()
    delivery = RecordingDelivery(big)
    route.consumer(max_body_bytes=small)(delivery)
    assert delivery.outcome[0] == "dead_letter" and f"over the limit of {small}" in delivery.outcome[1]
    assert seen == []
    fits = RecordingDelivery(big)
    route.consumer()(fits)  # the default (1 MiB) takes it
    assert fits.outcome == ("ack",) and seen == [Envelope.from_bytes(big).id]
