"""Sharded queues and exclusive consumers on the embedded transport.

A ``QueueSpec`` with ``shards`` > 1 is ``shards`` queues ``<name>.<i>``; publishing puts a message in
exactly one, ``shard_of(partition key or message id, shards)``, from any process (the shard count is
stored with the queue). An exclusive queue has one consumer at a time (a consumer lease in the
database); another takes over when it stops or its lease runs out. So one customer's messages are
handled in order, even with two consumer processes per shard and one of them killed mid-run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.base import (
    HEADER_FAILED_QUEUE,
    HEADER_PARTITION_KEY,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    Topology,
    shard_of,
)
from connectors.embedded import EmbeddedTransport
from tests.connectors.embedded_helpers import WAIT, consuming, drain, get_eventually, topology, wait_for


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'esb.db'}"


@pytest.fixture
def transport(url: str) -> Iterator[EmbeddedTransport]:
    transport = EmbeddedTransport(url, poll_interval=0.02)
    yield transport
    transport.close()


def test_a_message_goes_to_exactly_one_shard_by_its_partition_key(
    transport: EmbeddedTransport, url: str, unique_name: str
) -> None:
    spec = QueueSpec(f"{unique_name}.updates", ("customer.*",), shards=4)
    audit = QueueSpec(f"{unique_name}.audit", ("#",))
    transport.declare(topology(unique_name, spec, audit))
    keyed = [
        OutgoingMessage("customer.updated", f"C-{n % 40}:{n}".encode(), f"m-{n}", partition_key=f"C-{n % 40}")
        for n in range(80)
    ]
    unkeyed = [OutgoingMessage("customer.created", b"new", f"n-{n}") for n in range(12)]
    # a process that knows nothing of the spec (only the exchange's name) routes by what the database holds
    publisher = EmbeddedTransport(url)
    publisher.declare(
        Topology(
            exchange=f"{unique_name}.events",
            dead_letter_exchange=f"{unique_name}.dlx",
            dead_letter_queue=f"{unique_name}.dead_letter",
        )
    )
    try:
        publisher.publish(keyed + unkeyed)
    finally:
        publisher.close()

    where: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(spec.queue_names):
        for delivery in drain(transport, name):
            assert delivery.message_id is not None
            where[delivery.message_id].append(index)
            if delivery.message_id.startswith("m-"):
                assert delivery.headers[HEADER_PARTITION_KEY] == delivery.body.decode().split(":")[0]
    assert len(where) == 92 and all(len(shards) == 1 for shards in where.values()), "each in one shard, once"
    for message in keyed:
        assert where[message.message_id] == [shard_of(str(message.partition_key), 4)]
    for message in unkeyed:
        assert where[message.message_id] == [shard_of(message.message_id, 4)]
    assert len({shards[0] for shards in where.values()}) == 4, "every shard gets some"
    assert len(drain(transport, audit.name)) == 92, "an unsharded queue bound next to it gets them all"


def test_dead_letter_copies_reach_a_sharded_subscriber_by_partition_key(
    transport: EmbeddedTransport, unique_name: str
) -> None:
    orders = QueueSpec(f"{unique_name}.orders", ("order.*",))
    failures = QueueSpec(f"{unique_name}.failures", (), shards=2)
    transport.declare(topology(unique_name, orders, subscribers=(failures,)))
    keys = ["C-1", "C-2", "C-3", "C-4"]
    transport.publish([OutgoingMessage("order.placed", b"x", f"m-{key}", partition_key=key) for key in keys])
    for _ in keys:
        get_eventually(transport, orders.name).dead_letter("no such customer", "InvalidMessage")
    copies = {name: drain(transport, name) for name in failures.queue_names}
    for key in keys:
        found = [(name, d) for name, ds in copies.items() for d in ds if d.message_id == f"m-{key}"]
        assert [name for name, _ in found] == [failures.queue_names[shard_of(key, 2)]]
        assert found[0][1].headers[HEADER_FAILED_QUEUE] == orders.name
    assert len(drain(transport, f"{unique_name}.dead_letter")) == 4


def test_an_exclusive_queue_has_one_consumer_at_a_time(url: str, unique_name: str) -> None:
    spec = QueueSpec(f"{unique_name}.orders", ("order.*",))  # exclusive by default
    first = EmbeddedTransport(url, lease_seconds=2, poll_interval=0.02)
    second = EmbeddedTransport(url, lease_seconds=2, poll_interval=0.02)
    first.declare(topology(unique_name, spec))
    got: list[tuple[str, int]] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def handle(delivery: Delivery) -> None:
            got.append((name, int(delivery.body)))
            delivery.ack()

        return handle

    try:
        with consuming(first, spec.name, recorder("first")) as stop_first:
            first.publish([OutgoingMessage("order.placed", f"{n}".encode(), f"m-{n}") for n in range(5)])
            wait_for(lambda: len(got) == 5, "the first five")
            with consuming(second, spec.name, recorder("second")):
                first.publish([OutgoingMessage("order.placed", f"{n}".encode(), f"m-{n}") for n in range(5, 100)])
                wait_for(lambda: len(got) == 100, "a hundred")
                assert {name for name, _ in got} == {"first"}, "the second consumer waits"
                stop_first.set()  # the holder stops: it lets go of the queue, the second takes over
                time.sleep(0.1)
                first.publish([OutgoingMessage("order.placed", f"{n}".encode(), f"m-{n}") for n in range(100, 120)])
                wait_for(lambda: len(got) == 120, "the rest, by the second consumer")
        assert [n for _, n in got] == list(range(120))
        assert {name for name, n in got if n >= 100} == {"second"}
    finally:
        first.close()
        second.close()


def test_a_consumer_that_takes_a_queue_over_waits_for_the_previous_ones_running_handler(
    url: str, tmp_path: Path, unique_name: str
) -> None:
    spec = QueueSpec(f"{unique_name}.orders", ("order.*",))
    first = EmbeddedTransport(url, lease_seconds=1, poll_interval=0.02)
    second = EmbeddedTransport(url, lease_seconds=1, poll_interval=0.02)
    first.declare(topology(unique_name, spec))
    events: list[str] = []
    go = threading.Event()

    def first_handler(delivery: Delivery) -> None:
        events.append(f"first started {delivery.message_id}")
        go.wait(WAIT)
        delivery.ack()
        events.append(f"first acked {delivery.message_id}")

    def second_handler(delivery: Delivery) -> None:
        events.append(f"second started {delivery.message_id}")
        delivery.ack()

    try:
        with consuming(first, spec.name, first_handler):
            first.publish([OutgoingMessage("order.placed", b"x", f"m-{n}") for n in range(4)])
            wait_for(lambda: bool(events), "the first handler to start")
            with consuming(second, spec.name, second_handler):
                # the first consumer's lease is gone (it could not renew in time) while its handler runs
                with sqlite3.connect(tmp_path / "esb.db", isolation_level=None) as db:
                    db.execute(
                        "UPDATE esb_queues SET consumer_token = NULL, consumer_until = NULL WHERE name = ?",
                        (spec.name,),
                    )
                time.sleep(1.5)  # the second takes the queue over; the first gives back what it had not started
                go.set()
                wait_for(lambda: len(events) == 5, f"every message handled: {events}")
        assert events == [
            "first started m-0",
            "first acked m-0",
            "second started m-1",
            "second started m-2",
            "second started m-3",
        ]
    finally:
        first.close()
        second.close()


# -- per-key order with two consumer processes per shard, one of them killed

KEYS = 50
PER_KEY = 40  # 2,000 messages
SHARDS = 4


def _consumer_process(url: str, names: list[str], record: str) -> None:
    """One worker process consuming every shard (a thread and a transport each), recording every
    hand-over (monotonic time, key, seq) before its ack, as an effect committed before the ack."""
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        key, seq = delivery.body.decode().split(":")
        os.write(fd, f"{time.monotonic_ns()} {key} {seq}\n".encode())
        time.sleep(0.002)  # some work
        delivery.ack()

    threads = []
    for name in names:
        transport = EmbeddedTransport(url, lease_seconds=2, poll_interval=0.02)
        thread = threading.Thread(target=transport.consume, args=(name, handle), kwargs={"stop": stop}, daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def _records(path: Path) -> list[tuple[int, str, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line cut by the kill is not a record
            rows.append((int(parts[0]), parts[1], int(parts[2])))
    return rows


def test_per_key_order_holds_with_two_consumer_processes_per_shard_and_one_killed(
    url: str, transport: EmbeddedTransport, unique_name: str, tmp_path: Path
) -> None:
    spec = QueueSpec(f"{unique_name}.updates", ("customer.*",), shards=SHARDS)
    transport.declare(topology(unique_name, spec))
    messages = [
        OutgoingMessage("customer.updated", f"K{k}:{seq}".encode(), f"m-{k}-{seq}", partition_key=f"K{k}")
        for seq in range(PER_KEY)
        for k in range(KEYS)
    ]
    transport.publish(messages[:1000])
    fork = multiprocessing.get_context("fork")
    records = [tmp_path / "killed.txt", tmp_path / "survivor.txt"]
    killed = fork.Process(target=_consumer_process, args=(url, list(spec.queue_names), str(records[0])))
    survivor = fork.Process(target=_consumer_process, args=(url, list(spec.queue_names), str(records[1])))
    killed.start()
    try:
        wait_for(lambda: len(_records(records[0])) >= 100, "the first process at work")
        survivor.start()  # the second consumer of every shard: it waits for the first one's leases
        wait_for(lambda: len(_records(records[0])) >= 400, "the first process well into the run")
        assert killed.pid is not None
        os.kill(killed.pid, signal.SIGKILL)
        killed.join(WAIT)
        transport.publish(messages[1000:])

        def all_handled() -> bool:
            seen = {(key, seq) for path in records for _, key, seq in _records(path)}
            return len(seen) == KEYS * PER_KEY

        wait_for(all_handled, "all 2,000 messages handled", timeout=120)
        wait_for(lambda: sum(transport.message_count(name) for name in spec.queue_names) == 0, "empty shards")
    finally:
        for process in (killed, survivor):
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
                process.join(WAIT)

    first, second = (_records(path) for path in records)
    assert first and second, "both processes handled some"
    by_key: dict[str, list[int]] = defaultdict(list)
    for _, key, seq in sorted(first + second):
        if not by_key[key] or by_key[key][-1] != seq:  # the same message again right after: a redelivery
            by_key[key].append(seq)
    out_of_order = {key: seqs for key, seqs in by_key.items() if seqs != list(range(PER_KEY))}
    assert not out_of_order, f"{len(out_of_order)} keys out of order, e.g. {next(iter(out_of_order.items()))}"
    assert len(by_key) == KEYS
