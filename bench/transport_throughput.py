"""Throughput of RabbitMQTransport against raw pika, measured in the same run on the same queue.

    python bench/transport_throughput.py [--messages 20000] [--runs 3] [--prefetch 100]
                                         [--confirm-window 256] [--body-bytes 1024] [--url amqp://...]

Both sides send the same bytes (order.placed envelopes with a SalesOrder of as many lines as it
takes to reach --body-bytes) through the same durable topic exchange to the same quorum queue, with
persistent messages, mandatory routing, publisher confirms pipelined to the same window, and manual
acks with the same prefetch.

- raw: a pika SelectConnection publishing with pipelined confirms, then a BlockingConnection consuming
  with one basic_ack per message and no other work;
- ours: ``RabbitMQTransport.publish`` of the whole list, then ``RabbitMQTransport.consume`` with
  ``envelope_consumer`` (parse and validate the envelope, ack) and a handler that validates the SalesOrder;
  once more with a handler that only acks, to tell the transport's cost from the validation's.

Connection set-up is outside the publish timings (raw starts the clock once confirm mode is on; ours
publishes one warm-up message first) and inside the consume timings (both open a consumer connection).
The medians of --runs runs are compared.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pika
import pika.spec
import structlog

from canonical_model.envelope import Envelope
from canonical_model.order import OrderLine, SalesOrder
from connectors.base import Delivery, OutgoingMessage, QueueSpec, Topology
from connectors.consumer import envelope_consumer
from connectors.publishing import to_message
from connectors.rabbitmq import RabbitMQTransport

ROUTING_KEY = "order.placed"


def order_envelope(number: int, lines: int) -> Envelope:
    order = SalesOrder(
        id=f"SO-2025-{number:08d}",
        customer_id=f"C-{100000 + number % 5000}",
        currency="EUR",
        order_date=date(2025, 3, 14),
        lines=[
            OrderLine(
                product_id=f"MAT-{(number + line) % 900 + 100:06d}",
                quantity=Decimal(line % 7 + 1),
                unit="H87",
                unit_price=Decimal("19.90") + line,
            )
            for line in range(lines)
        ],
    )
    return Envelope.new(ROUTING_KEY, order, source="/crm", subject=order.customer_id)


def build_messages(count: int, body_bytes: int) -> list[OutgoingMessage]:
    lines = 1
    while len(order_envelope(0, lines).to_bytes()) < body_bytes:
        lines += 1
    return [to_message(order_envelope(number, lines)) for number in range(count)]


# -- raw pika


def raw_publish(url: str, exchange: str, messages: Sequence[OutgoingMessage], window: int) -> float:
    """Seconds to publish ``messages`` with pipelined confirms on a SelectConnection, set-up excluded."""
    state: dict[str, Any] = {"sent": 0, "confirmed": 0, "last": 0, "error": None, "start": 0.0, "end": 0.0}
    channel_box: list[Any] = []

    def pump() -> None:
        channel = channel_box[0]
        while state["sent"] < len(messages) and state["sent"] - state["confirmed"] < window:
            message = messages[state["sent"]]
            properties = pika.BasicProperties(
                delivery_mode=2, content_type=message.content_type, message_id=message.message_id
            )
            channel.basic_publish(exchange, message.routing_key, message.body, properties, mandatory=True)
            state["sent"] += 1

    def on_confirm(frame: Any) -> None:
        method = frame.method
        if not isinstance(method, pika.spec.Basic.Ack):
            state["error"] = "nack"
        count = method.delivery_tag - state["last"] if method.multiple else 1
        state["last"] = max(state["last"], method.delivery_tag)
        state["confirmed"] += count
        if state["confirmed"] >= len(messages):
            state["end"] = time.perf_counter()
            connection.close()
        else:
            pump()

    def on_return(*_: Any) -> None:
        state["error"] = "unroutable"

    def on_selected(_frame: Any) -> None:
        state["start"] = time.perf_counter()
        pump()

    def on_channel(channel: Any) -> None:
        channel_box.append(channel)
        channel.add_on_return_callback(on_return)
        channel.confirm_delivery(on_confirm, callback=on_selected)

    connection = pika.SelectConnection(
        pika.URLParameters(url),
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_open_error_callback=lambda _conn, error: state.update(error=repr(error)),
        on_close_callback=lambda conn, _reason: conn.ioloop.stop(),
    )
    connection.ioloop.start()
    if state["error"] or state["confirmed"] < len(messages):
        raise RuntimeError(f"raw publish failed: {state['error']}, {state['confirmed']} confirmed")
    return float(state["end"] - state["start"])


def raw_consume(url: str, queue: str, count: int, prefetch: int) -> float:
    """Seconds until ``count`` messages were received and acked, one basic_ack each."""
    start = time.perf_counter()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    state = {"received": 0, "end": 0.0}

    def on_message(channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        state["received"] += 1
        if state["received"] == count:
            state["end"] = time.perf_counter()

    channel.basic_consume(queue, on_message, auto_ack=False)
    while state["received"] < count:
        connection.process_data_events(time_limit=0.1)
    connection.close()
    return state["end"] - start


# -- ours


def our_consume(transport: RabbitMQTransport, queue: str, count: int, prefetch: int, *, validate: bool) -> float:
    """Seconds until ``count`` deliveries were handled: envelope and SalesOrder validated, or only acked."""
    stop = threading.Event()
    state = {"handled": 0, "end": 0.0}

    def done() -> None:
        state["handled"] += 1
        if state["handled"] == count:
            state["end"] = time.perf_counter()
            stop.set()

    def handle(envelope: Envelope) -> None:
        SalesOrder.model_validate(envelope.data)
        done()

    def ack_only(delivery: Delivery) -> None:
        delivery.ack()
        done()

    start = time.perf_counter()
    transport.consume(queue, envelope_consumer(handle) if validate else ack_only, stop=stop, prefetch=prefetch)
    return state["end"] - start


# -- the run


def drain(transport: RabbitMQTransport, queue: str) -> None:
    transport.purge(queue)
    if transport.message_count(queue):
        raise RuntimeError(f"{queue} is not empty")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--confirm-window", type=int, default=256)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be at least 3 (the median of fewer says little)")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    messages = build_messages(args.messages, args.body_bytes)
    sizes = sorted(len(m.body) for m in messages)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    topology = Topology(
        queues=(QueueSpec(f"{name}.orders", (ROUTING_KEY,)),),
        exchange=f"{name}.events",
        dead_letter_exchange=f"{name}.dlx",
        dead_letter_queue=f"{name}.dead_letter",
    )
    queue = topology.queues[0].name
    transport = RabbitMQTransport(args.url, confirm_window=args.confirm_window)
    print(
        f"transport throughput: {args.messages} messages x {args.runs} runs; body {sizes[0]}..{sizes[-1]} bytes "
        f"(median {statistics.median(sizes):.0f}), same bytes on both sides; prefetch {args.prefetch}; "
        f"confirm window {args.confirm_window}; persistent, mandatory; durable quorum queue via topic exchange"
    )
    results: dict[str, list[float]] = {}
    try:
        transport.declare(topology)
        transport.publish(messages[:1])  # warm-up: connects our publisher
        drain(transport, queue)
        for run in range(1, args.runs + 1):
            rates = {
                "raw publish": args.messages / raw_publish(args.url, topology.exchange, messages, args.confirm_window),
                "raw consume": args.messages / raw_consume(args.url, queue, args.messages, args.prefetch),
            }
            drain(transport, queue)
            start = time.perf_counter()
            transport.publish(messages)
            rates["ours publish"] = args.messages / (time.perf_counter() - start)
            rates["ours consume"] = args.messages / our_consume(
                transport, queue, args.messages, args.prefetch, validate=True
            )
            drain(transport, queue)
            transport.publish(messages)
            rates["ours consume, ack only"] = args.messages / our_consume(
                transport, queue, args.messages, args.prefetch, validate=False
            )
            drain(transport, queue)
            for key, rate in rates.items():
                results.setdefault(key, []).append(rate)
            print(f"run {run}: " + " | ".join(f"{key} {rate:,.0f}" for key, rate in rates.items()) + " (msg/s)")
        medians = {key: statistics.median(values) for key, values in results.items()}
        print("median: " + " | ".join(f"{key} {rate:,.0f}" for key, rate in medians.items()) + " (msg/s)")
        print(
            f"ratio ours/raw: publish {medians['ours publish'] / medians['raw publish']:.2f}, "
            f"consume {medians['ours consume'] / medians['raw consume']:.2f} "
            f"(transport alone, ack only: {medians['ours consume, ack only'] / medians['raw consume']:.2f}; "
            "the rest is parsing and validating envelope and SalesOrder)"
        )
    finally:
        transport.delete(topology)
        transport.close()


if __name__ == "__main__":
    main()
