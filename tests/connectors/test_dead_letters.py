"""Reading a dead letter: the reason from our headers or from the broker's x-death, bounded; its fate."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from canonical_model.errors import BackOfficeUnavailable, InvalidMessage
from canonical_model.truncation import TRUNCATED
from connectors.base import (
    DEAD_LETTER_STACK_MAX,
    HEADER_ERROR_REASON,
    HEADER_ERROR_STACK,
    HEADER_ERROR_TYPE,
    HEADER_FAILED_AT,
    HEADER_FAILED_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    DeathRecord,
    HeaderValue,
    dead_letter_headers,
)
from connectors.consumer import settle_dead_letter
from connectors.dead_letters import NO_REASON, REASON_MAX, DeadLetter, read_dead_letter
from connectors.rabbitmq.deaths import MAX_DEATHS, parse_x_death
from tests.connectors.recording import RecordingDelivery

T0 = datetime(2026, 11, 30, 4, 0, 0, tzinfo=UTC)


def FakeDelivery(
    headers: Mapping[str, HeaderValue] | None = None,
    deaths: tuple[DeathRecord, ...] = (),
    routing_key: str = "order.placed",
) -> RecordingDelivery:
    """A dead letter as the order-failures route receives it."""
    return RecordingDelivery(headers=headers, deaths=deaths, routing_key=routing_key, queue="esb.crm.order_failures")


def test_x_death_tables_are_read_as_records() -> None:
    header = [
        {"reason": "delivery_limit", "queue": "esb.erp.order_placed", "count": 1, "time": datetime(2026, 11, 30, 4)},
        {"reason": b"rejected", "queue": b"esb.other", "count": 3, "exchange": "esb.events"},
    ]
    assert parse_x_death(header) == (
        DeathRecord("delivery_limit", "esb.erp.order_placed", 1, T0),
        DeathRecord("rejected", "esb.other", 3, None),
    )


@pytest.mark.parametrize(
    "header",
    [None, "[{'reason': 'rejected'}]", b"x", 42, {"reason": "rejected"}, [None, 1, "x", {"queue": "q"}, {"reason": 7}]],
)
def test_a_malformed_x_death_is_no_death(header: Any) -> None:
    assert parse_x_death(header) == ()


def test_x_death_values_are_bounded() -> None:
    huge = [{"reason": "r" * 10_000, "queue": "q" * 10_000, "count": 10**30, "time": "yesterday"}] * 50
    records = parse_x_death(huge)
    assert len(records) == MAX_DEATHS
    assert len(records[0].reason) <= 64 and records[0].reason.endswith(TRUNCATED)
    assert len(records[0].queue) <= 255
    assert records[0].count == 10**9 and records[0].time is None
    assert parse_x_death([{"reason": "rejected", "count": True}])[0].count == 0


def test_our_own_dead_letter_gives_its_reason_queue_and_routing_key() -> None:
    delivery = FakeDelivery(
        {
            HEADER_ERROR_REASON: "delivery limit exceeded; last error: erp: HTTP 503",
            HEADER_FAILED_QUEUE: "esb.erp.order_placed",
            HEADER_ORIGINAL_ROUTING_KEY: "order.placed",
            HEADER_FAILED_AT: T0.isoformat(),
        },
        routing_key="ignored.by.fanout",
    )
    dead = read_dead_letter(delivery)
    assert dead == DeadLetter(
        routing_key="order.placed",
        message_id="m-1",
        body=b"{}",
        reason="delivery limit exceeded; last error: erp: HTTP 503 [in esb.erp.order_placed]",
        failed_queue="esb.erp.order_placed",
        by_broker=False,
        failed_at=T0,
        headers=delivery.headers,
    )


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("rejected", "rejected without requeue"),
        ("expired", "expired (time to live)"),
        ("delivery_limit", "delivery limit exceeded"),
        ("maxlen", "dropped: queue full"),
        ("something_new", "something_new"),
    ],
)
def test_the_brokers_dead_letter_gives_the_x_death_reason(reason: str, words: str) -> None:
    dead = read_dead_letter(FakeDelivery(deaths=(DeathRecord(reason, "esb.erp.order_placed", 2, T0),)))
    assert dead.by_broker and dead.routing_key == "order.placed" and dead.failed_queue == "esb.erp.order_placed"
    assert dead.reason == f"{words} [x-death: {reason} in esb.erp.order_placed, count 2]"
    # what the failed-message store keeps of it
    assert (dead.error_type, dead.death_count, dead.failed_at) == (f"broker:{reason}", 2, T0)


def test_the_more_recent_death_wins() -> None:
    ours = {HEADER_ERROR_REASON: "customer unknown", HEADER_FAILED_AT: T0.isoformat(), HEADER_FAILED_QUEUE: "q1"}
    earlier = DeathRecord("rejected", "q0", 1, T0.replace(hour=3))
    later = DeathRecord("expired", "q2", 1, T0.replace(hour=5))
    assert read_dead_letter(FakeDelivery(ours, deaths=(earlier,))).reason == "customer unknown [in q1]"
    assert read_dead_letter(FakeDelivery(ours, deaths=(later,))).reason.startswith("expired (time to live)")
    # a tie, or no time to compare, goes to our own headers
    assert not read_dead_letter(FakeDelivery(ours, deaths=(DeathRecord("rejected", "q0", 1, T0),))).by_broker
    assert not read_dead_letter(FakeDelivery(ours, deaths=(DeathRecord("rejected", "q0", 1),))).by_broker


def test_a_dead_letter_without_reason_or_with_a_huge_one() -> None:
    assert read_dead_letter(FakeDelivery()).reason == NO_REASON
    dead = read_dead_letter(FakeDelivery({HEADER_ERROR_REASON: "x" * 200_000, HEADER_FAILED_QUEUE: 7}))
    assert len(dead.reason) == REASON_MAX and dead.reason.endswith(TRUNCATED)
    assert dead.failed_queue == ""


def test_a_subscribers_fate_follows_the_error_tree() -> None:
    seen: list[DeadLetter] = []
    delivery = FakeDelivery({HEADER_ERROR_REASON: "why"})
    assert settle_dead_letter(delivery, seen.append) == "acked"
    assert seen[0].reason == "why" and delivery.outcome == ("ack",)

    def permanent(dead: DeadLetter) -> None:
        raise InvalidMessage("cannot")

    def transient(dead: DeadLetter) -> None:
        raise BackOfficeUnavailable("crm down", system="crm")

    delivery = FakeDelivery()
    assert settle_dead_letter(delivery, permanent) == "dead_lettered"
    assert delivery.outcome == ("dead_letter", "cannot", "InvalidMessage")
    delivery = FakeDelivery()
    assert settle_dead_letter(delivery, transient) == "retried"
    assert delivery.outcome == ("retry", 1.0, "crm: crm down")


def test_the_stack_of_a_dead_letter_keeps_its_innermost_frames_and_is_handed_on() -> None:
    stack = "Traceback (most recent call last):\n" + "  File outer\n" * 1000 + "  File innermost\nInvalidMessage: x\n"
    headers = dead_letter_headers(reason="x", error_type="InvalidMessage", queue="q", routing_key="k", stack=stack)
    kept = str(headers[HEADER_ERROR_STACK])
    assert len(kept) == DEAD_LETTER_STACK_MAX and kept.endswith("  File innermost\nInvalidMessage: x\n")
    assert HEADER_ERROR_STACK not in dead_letter_headers(reason="x", error_type="E", queue="q", routing_key="k")
    dead = read_dead_letter(FakeDelivery({HEADER_ERROR_REASON: "x", HEADER_ERROR_TYPE: "InvalidMessage", **headers}))
    assert (dead.error_type, dead.stack) == ("InvalidMessage", kept)
