"""Throughput of the embedded transport (one consumer) against a raw SQLite queue, in the same run.

    python bench/embedded_throughput.py [--messages 5000] [--runs 3] [--prefetch 50] [--body-bytes 1024]
                                        [--url sqlite:///path/esb.db | postgresql+psycopg://...]

Both sides hold the same bytes (order.placed envelopes as bench/transport_throughput.py builds them) in
a database file with the same durability (WAL, synchronous=FULL: a commit is on disk when it returns).

- raw: the sqlite3 module, one table, each message taken by its own transaction
  (``DELETE ... WHERE id = (SELECT min(id) ...) RETURNING body``), no other work;
- ours: ``EmbeddedTransport.publish`` of the whole list (not timed against raw), then
  ``EmbeddedTransport.consume`` with a handler that only acks (the transport's cost), and once more with
  ``envelope_consumer`` (parse and validate envelope and SalesOrder, ack).

The consume timings include starting the consumer. The medians of --runs runs are compared; with --url
naming PostgreSQL, "raw" still runs on SQLite (a reference point, not a like-for-like baseline).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import structlog
from transport_throughput import ROUTING_KEY, build_messages

from canonical_model.envelope import Envelope
from canonical_model.order import SalesOrder
from connectors.base import Delivery, OutgoingMessage, QueueSpec, Topology
from connectors.consumer import envelope_consumer
from connectors.embedded import EmbeddedTransport


def raw_consume(path: Path, messages: Sequence[OutgoingMessage]) -> float:
    """Seconds to take every message out of a plain SQLite table, one transaction each."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO q (body) VALUES (?)", [(m.body,) for m in messages])
    connection.execute("COMMIT")
    start = time.perf_counter()
    taken = 0
    while True:
        connection.execute("BEGIN IMMEDIATE")
        row = connection.execute("DELETE FROM q WHERE id = (SELECT min(id) FROM q) RETURNING body").fetchone()
        connection.execute("COMMIT")
        if row is None:
            break
        taken += 1
    elapsed = time.perf_counter() - start
    connection.close()
    if taken != len(messages):
        raise RuntimeError(f"raw took {taken} of {len(messages)}")
    return elapsed


def our_consume(transport: EmbeddedTransport, queue: str, count: int, prefetch: int, *, validate: bool) -> float:
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
    if state["handled"] != count:
        raise RuntimeError(f"handled {state['handled']} of {count}")
    return state["end"] - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--url", default=None, help="the transport's database (default: a temporary SQLite file)")
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
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/esb.db"
        transport = EmbeddedTransport(url)
        has_concurrency = "concurrency" in inspect.signature(transport.consume).parameters
        print(
            f"embedded throughput: {args.messages} messages x {args.runs} runs; body {sizes[0]}..{sizes[-1]} bytes; "
            f"prefetch {args.prefetch}; one consumer{' (concurrency 1)' if has_concurrency else ''}; "
            f"{transport._engine.url.get_backend_name()}"
        )
        results: dict[str, list[float]] = {}
        try:
            transport.declare(topology)
            for run in range(1, args.runs + 1):
                rates = {"raw sqlite take": args.messages / raw_consume(Path(tmp) / f"raw{run}.db", messages)}
                transport.publish(messages)
                rates["ours consume, ack only"] = args.messages / our_consume(
                    transport, queue, args.messages, args.prefetch, validate=False
                )
                transport.publish(messages)
                rates["ours consume"] = args.messages / our_consume(
                    transport, queue, args.messages, args.prefetch, validate=True
                )
                for key, rate in rates.items():
                    results.setdefault(key, []).append(rate)
                print(f"run {run}: " + " | ".join(f"{key} {rate:,.0f}" for key, rate in rates.items()) + " (msg/s)")
            medians = {key: statistics.median(values) for key, values in results.items()}
            print("median: " + " | ".join(f"{key} {rate:,.0f}" for key, rate in medians.items()) + " (msg/s)")
            print(
                f"ratio ours/raw: ack only {medians['ours consume, ack only'] / medians['raw sqlite take']:.2f}, "
                f"with envelope + SalesOrder validation {medians['ours consume'] / medians['raw sqlite take']:.2f}"
            )
        finally:
            transport.delete(topology)
            transport.close()


if __name__ == "__main__":
    main()
