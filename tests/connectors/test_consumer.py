"""The ack decision (connectors.consumer.settle) on a recording delivery: one rule per outcome."""

from __future__ import annotations

import pytest

from canonical_model.envelope import Envelope
from canonical_model.errors import BackOfficeUnavailable, BusinessRejection, MappingError
from connectors.consumer import exponential_backoff, settle
from tests.connectors.recording import RecordingDelivery

VALID = Envelope.new("order.placed", {"id": "SO-1"}, source="/crm").to_bytes()


def no_pause(_: int) -> float:
    return 0.0


def test_success_acks() -> None:
    seen: list[str] = []
    delivery = RecordingDelivery(VALID)
    assert settle(delivery, lambda envelope: seen.append(envelope.data["id"]), no_pause) == "acked"
    assert (delivery.outcome, seen) == (("ack",), ["SO-1"])


@pytest.mark.parametrize("body", [b"{not json", b'{"type": "order.placed"}', b"[]"])
def test_a_body_that_is_not_an_envelope_is_dead_lettered_with_the_reason(body: bytes) -> None:
    delivery = RecordingDelivery(body)
    assert settle(delivery, lambda envelope: None, no_pause) == "dead_lettered"
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
    assert settle(delivery, handler, no_pause) == "dead_lettered"
    assert delivery.outcome == ("dead_letter", str(error), type(error).__name__)


@pytest.mark.parametrize("error", [BackOfficeUnavailable("down", system="erp"), KeyError("a bug")])
def test_transient_and_unexpected_errors_requeue_after_a_growing_pause(error: Exception) -> None:
    pauses: list[int] = []

    def handler(envelope: Envelope) -> None:
        raise error

    def backoff(previous: int) -> float:
        pauses.append(previous)
        return 0.0

    delivery = RecordingDelivery(VALID, previous_deliveries=3)
    assert settle(delivery, handler, backoff) == "requeued"
    assert delivery.outcome[0] == "requeue"
    assert str(error) in delivery.outcome[1], "the last error goes with the requeue, for a delivery-limit reason"
    assert pauses == [3]


def test_exponential_backoff_grows_and_is_capped() -> None:
    assert [exponential_backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


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
    assert settle(delivery, lambda envelope: handled.append(envelope.type), no_pause, accepts=accepts) == outcome
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
    route.consumer(no_pause, max_body_bytes=small)(delivery)
    assert delivery.outcome[0] == "dead_letter" and f"over the limit of {small}" in delivery.outcome[1]
    assert seen == []
    fits = RecordingDelivery(big)
    route.consumer(no_pause)(fits)  # the default (1 MiB) takes it
    assert fits.outcome == ("ack",) and seen == [Envelope.from_bytes(big).id]
