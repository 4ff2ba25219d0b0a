"""Issue 7, cases 4 and 5: what comes off the wire is bounded and read defensively.

Case 4: a dead-letter reason copied from input (a 300 kB attribute name or id, an error text of
300 kB), or an original message whose own headers nearly fill the frame, made the dead-letter copy
larger than RabbitMQ's frame (131,072 bytes): the broker closed the consumer's connection, and the
messages behind the poison one burnt their delivery limit. Right: every value our dead-letter
headers carry is bounded, the copy's headers stay under the frame (the original's largest left out,
named in ``x-esb-dropped-headers``); the poison message is dead-lettered once, with a reason, and
nothing else is touched (one consumer connection, every valid message acknowledged once).

Case 5: a publisher-set ``x-delivery-count: "abc"`` raised in the RabbitMQ delivery and the consumer
reconnected; so did a header table nested 1,000 deep (pika's decoder recursed) and a timestamp past
the year 9999. Right: such headers are ignored (the broker's own count is taken where it exists) and
the message is handled like any other; never an exception in the consume loop.
"""

from __future__ import annotations

import json
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.data
import pytest
import structlog

import connectors.base as base
from canonical_model.envelope import Envelope
from canonical_model.errors import BusinessRejection
from connectors.base import HEADER_ERROR_REASON, Delivery, OutgoingMessage, QueueSpec, Topology, dead_letter_headers
from connectors.consumer import envelope_consumer
from connectors.embedded.transport import EmbeddedTransport
from connectors.rabbitmq.transport import RabbitMQTransport

VALID_BEHIND = 48


def test_dead_letter_headers_are_bounded_whatever_the_caller_passes() -> None:
    huge = "k" * 300_000
    headers = dead_letter_headers(reason=huge, error_type=huge, queue=huge, routing_key=huge)
    assert all(isinstance(value, str) and len(value) <= 1000 for value in headers.values()), {
        key: len(str(value)) for key, value in headers.items()
    }
    assert str(headers[HEADER_ERROR_REASON]).endswith("…[truncated]")
    assert len(json.dumps(headers).encode()) < 8_000


def test_a_copy_leaves_out_the_largest_original_headers_and_says_so() -> None:
    original = {"small": "s", "big": "b" * 100_000, "bigger": "c" * 125_000, "x-death": "d"}
    ours = dead_letter_headers(reason="r", error_type="InvalidMessage", queue="q", routing_key="order.placed")
    copy = base.fit_headers(original, ours, size_of=lambda key, value: len(key) + len(str(value)))
    assert copy["small"] == "s" and copy["x-death"] == "d" and copy["big"] == original["big"]
    assert "bigger" not in copy
    assert "1 header(s)" in copy[base.HEADER_DROPPED_HEADERS] and "bigger" in copy[base.HEADER_DROPPED_HEADERS]
    assert copy[HEADER_ERROR_REASON] == "r"


class _Raw:
    """A header value given as its AMQP field-table bytes: what pika itself would refuse to encode."""

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded


def _nested(depth: int) -> _Raw:
    encoded = b"F" + struct.pack(">I", 0)
    for _ in range(depth - 1):
        body = b"\x01a" + encoded
        encoded = b"F" + struct.pack(">I", len(body)) + body
    return _Raw(encoded)


@pytest.fixture
def raw_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    original = pika.data.encode_value

    def encode_value(pieces: list[bytes], value: Any) -> int:
        if isinstance(value, _Raw):
            pieces.append(value.encoded)
            return len(value.encoded)
        size: int = original(pieces, value)
        return size

    monkeypatch.setattr(pika.data, "encode_value", encode_value)


class _Counting(pika.BlockingConnection):  # type: ignore[misc]
    consumers = 0

    def __init__(self, parameters: pika.ConnectionParameters) -> None:
        super().__init__(parameters)
        if "consumer" in str((parameters.client_properties or {}).get("connection_name", "")):
            _Counting.consumers += 1


@pytest.fixture
def rabbitmq(rabbitmq_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RabbitMQTransport]:
    monkeypatch.setattr(pika, "BlockingConnection", _Counting)
    _Counting.consumers = 0
    transport = RabbitMQTransport(rabbitmq_url)
    topology = _topology(unique_name)
    transport.declare(topology)
    try:
        yield transport
    finally:
        transport.delete(topology)
        transport.close()


def _topology(name: str) -> Topology:
    return Topology(
        queues=(QueueSpec(f"{name}.orders", ("order.placed",)),),
        exchange=f"{name}.events",
        dead_letter_exchange=f"{name}.dlx",
        dead_letter_queue=f"{name}.dead_letter",
    )


def _valid(n: int) -> OutgoingMessage:
    envelope = Envelope.new("order.placed", {"n": n}, source="/test")
    return OutgoingMessage("order.placed", envelope.to_bytes(), f"valid-{n}")


def _run(transport: Any, queue: str, until: Callable[[], bool], handled: list[str]) -> None:
    """Consume ``queue`` with a handler that acks any envelope unless its data says ``fail``."""

    def handler(envelope: Envelope) -> None:
        handled.append(envelope.id)
        if "fail" in envelope.data:
            raise BusinessRejection(str(envelope.data["fail"]), code="FUZZ")

    stop = threading.Event()
    thread = threading.Thread(target=transport.consume, args=(queue, envelope_consumer(handler)), kwargs={"stop": stop})
    thread.start()
    try:
        for _ in range(300):
            if until():
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(30)


def _drain(transport: Any, queue: str) -> list[Delivery]:
    taken = []
    while (delivery := transport.get(queue)) is not None:
        delivery.ack()
        taken.append(delivery)
    return taken


def _publish_raw(url: str, exchange: str, messages: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    for message_id, body, headers in messages:
        channel.basic_publish(
            exchange, "order.placed", body, pika.BasicProperties(message_id=message_id, headers=headers)
        )
    connection.close()


def _poison_then_valid(
    rabbitmq: RabbitMQTransport, rabbitmq_url: str, name: str, poison: list[tuple[str, bytes, dict[str, Any]]]
) -> tuple[Counter[str], list[str], list[Delivery]]:
    """Publish the poison messages, then ``VALID_BEHIND`` valid ones; consume until all are settled.

    Returns how often each envelope id was handled, the valid ones' envelope ids, and the dead letters.
    """
    topology = _topology(name)
    _publish_raw(rabbitmq_url, topology.exchange, poison)
    valid = [_valid(n) for n in range(VALID_BEHIND)]
    rabbitmq.publish(valid)
    handled: list[str] = []
    queue = topology.queues[0].name
    valid_ids = [Envelope.from_bytes(m.body).id for m in valid]

    def settled() -> bool:
        return (
            set(valid_ids) <= set(handled)
            and rabbitmq.message_count(topology.dead_letter_queue) >= len(poison)
            and rabbitmq.message_count(queue) == 0
        )

    _run(rabbitmq, queue, settled, handled)
    return Counter(handled), valid_ids, _drain(rabbitmq, topology.dead_letter_queue)


def _bounded_reasons(dead: list[Delivery]) -> None:
    for delivery in dead:
        reason = str(delivery.headers.get(HEADER_ERROR_REASON, ""))
        assert 0 < len(reason) <= 1000, (delivery.message_id, len(reason))


def test_case_4_a_poison_message_with_a_reason_or_headers_of_frame_size_is_dead_lettered_alone(
    rabbitmq: RabbitMQTransport, rabbitmq_url: str, unique_name: str
) -> None:
    big_id = Envelope.new("order.placed", {}, source="/partner").model_dump(mode="json") | {"id": "i" * 300_000}
    big_name = Envelope.new("order.placed", {}, source="/partner").model_dump(mode="json") | {"k" * 300_000: "v"}
    big_error = Envelope.new("order.placed", {"fail": "e" * 300_000}, source="/partner")
    poison = [
        ("poison-id", json.dumps(big_id).encode(), {}),
        ("poison-name", json.dumps(big_name).encode(), {}),
        ("poison-error", big_error.to_bytes(), {}),  # the handler's error repeats 300 kB of input
        ("poison-frame", b"not json", {"near-frame": "y" * 130_900}),  # with our headers: past the frame
    ]
    handled, valid_ids, dead = _poison_then_valid(rabbitmq, rabbitmq_url, unique_name, poison)

    assert Counter(d.message_id for d in dead) == Counter(message_id for message_id, _, _ in poison)
    _bounded_reasons(dead)
    frame = next(d for d in dead if d.message_id == "poison-frame")
    assert "near-frame" in str(frame.headers.get("x-esb-dropped-headers")), "the header left out is named"
    assert handled == Counter(valid_ids) + Counter([big_error.id]), "each valid one once, the failing one once"
    assert _Counting.consumers == 1, "the consumer kept its one connection"


def test_case_5_junk_headers_from_a_publisher_are_ignored_not_fatal(
    rabbitmq: RabbitMQTransport, rabbitmq_url: str, unique_name: str, raw_encoding: None
) -> None:
    failing = Envelope.new("order.placed", {"fail": "no"}, source="/partner")
    poison = [
        ("count-abc", failing.to_bytes(), {"x-delivery-count": "abc"}),
        ("count-table", b"not json", {"x-delivery-count": {"a": 1}}),
        ("deep-1000", b"not json", {"deep": _nested(1000)}),
        ("year-beyond-9999", b"not json", {"when": _Raw(b"T" + struct.pack(">Q", 2**63))}),
    ]
    handled, valid_ids, dead = _poison_then_valid(rabbitmq, rabbitmq_url, unique_name, poison)

    assert Counter(d.message_id for d in dead) == Counter(message_id for message_id, _, _ in poison)
    _bounded_reasons(dead)
    count_abc = next(d for d in dead if d.message_id == "count-abc")
    assert count_abc.headers[base.HEADER_ERROR_TYPE] == "BusinessRejection", "handled like any message, at once"
    assert handled == Counter(valid_ids) + Counter([failing.id])
    assert _Counting.consumers == 1, "the consumer kept its one connection"


def test_a_copy_never_carries_an_x_death_the_broker_did_not_write(
    rabbitmq: RabbitMQTransport, rabbitmq_url: str, unique_name: str
) -> None:
    """RabbitMQ 3.10 crashes its dead-letter worker on a junk x-death when it dead-letters a message itself
    (a subscriber's queue past its delivery limit); a few crashes stop dead-lettering on the whole node.

    (Kept apart from the case 5 test: there, the old code's reconnects made the broker dead-letter the
    junk x-death itself, which broke the shared test broker until ``rabbit_fifo_dlx_sup`` was restarted.)
    """
    poison = [("death-junk", b"not json", {"x-death": [1, "two", {"reason": 5, "count": "x"}], "x-keep": "k"})]
    _handled, _valid_ids, dead = _poison_then_valid(rabbitmq, rabbitmq_url, unique_name, poison)
    [junk] = dead
    assert "x-death" not in junk.headers and "x-death" in str(junk.headers.get("x-esb-dropped-headers"))
    assert junk.headers["x-keep"] == "k"


def test_a_delivery_reads_a_publishers_count_only_as_the_broker_would() -> None:
    from connectors.rabbitmq.delivery import previous_deliveries

    assert previous_deliveries({"x-delivery-count": "abc"}, redelivered=False) == 0
    assert previous_deliveries({"x-delivery-count": 99}, redelivered=False) == 0, "a first delivery is a first"
    assert previous_deliveries({"x-delivery-count": "abc"}, redelivered=True) == 1
    assert previous_deliveries({"x-delivery-count": True}, redelivered=True) == 1
    assert previous_deliveries({"x-delivery-count": 3}, redelivered=True) == 3


def test_embedded_dead_letter_copies_keep_the_same_header_bound(tmp_path: Any, unique_name: str) -> None:
    transport = EmbeddedTransport(f"sqlite:///{tmp_path}/esb.db")
    topology = _topology(unique_name)
    transport.declare(topology)
    queue = topology.queues[0].name
    poison = OutgoingMessage("order.placed", b"not json", "poison", {"a": "a" * 90_000, "b": "b" * 60_000, "c": 7})
    failing = Envelope.new("order.placed", {"fail": "e" * 300_000}, source="/partner")
    transport.publish(
        [poison, OutgoingMessage("order.placed", failing.to_bytes(), "failing"), *(_valid(n) for n in range(3))]
    )
    handled: list[str] = []
    _run(transport, queue, lambda: transport.message_count(topology.dead_letter_queue) >= 2, handled)
    dead = {d.message_id: d for d in _drain(transport, topology.dead_letter_queue)}
    transport.close()

    assert sorted(dead) == ["failing", "poison"]
    _bounded_reasons(list(dead.values()))
    copy = dead["poison"].headers
    assert len(json.dumps(dict(copy), ensure_ascii=False).encode()) <= 120 * 1024
    assert copy["b"] == "b" * 60_000 and copy["c"] == 7 and "a" not in copy, "the largest is left out"
    assert "1 header(s)" in str(copy.get("x-esb-dropped-headers"))


def test_a_message_id_no_short_string_holds_fails_its_publish_with_a_bounded_error(
    rabbitmq: RabbitMQTransport, unique_name: str
) -> None:
    from canonical_model.errors import TransportError

    with structlog.testing.capture_logs() as logs, pytest.raises(TransportError) as failed:
        rabbitmq.publish([OutgoingMessage("order.placed", b"x", "i" * 300_000)])
    assert len(str(failed.value)) < 500 and "ShortStringTooLong" in str(failed.value)
    [logged] = [entry for entry in logs if entry["event"] == "publish failed"]
    # a traceback would quote the exception, and pika's quotes the whole value
    assert "exc_info" not in logged and all(len(str(value)) < 500 for value in logged.values()), logged.keys()
    rabbitmq.publish([OutgoingMessage("order.placed", b"x", "next")])  # the publisher is usable again
    assert rabbitmq.message_count(_topology(unique_name).queues[0].name) == 1


def test_pikas_decoder_is_bounded_once_the_transport_is_imported() -> None:
    from connectors.rabbitmq import wire

    assert wire.installed(), "connectors.rabbitmq.transport installs it"
    deep = _nested(5000).encoded
    table = b"\x04deep" + deep + b"\x04next" + b"S" + struct.pack(">I", 2) + b"ok"
    decoded, offset = pika.data.decode_table(struct.pack(">I", len(table)) + table, 0)
    assert decoded["next"] == "ok" and offset == len(table) + 4, "decoding goes on after the deep table"
    level = decoded["deep"]
    for _ in range(wire.MAX_DEPTH - 1):
        level = level["a"]
    assert level == {"a": wire.TOO_DEEP}
    when, _ = pika.data.decode_value(b"T" + struct.pack(">Q", 2**63), 0)
    assert when == 2**63
