"""Worker processes sharing a sharded route (esb/worker.py ``ShardConsumers`` driven by esb/shards.py leases).

Two workers, each with its own transport, lease engine, route executor and consume threads, on the real
broker (RabbitMQ + leases in PostgreSQL) and on the embedded transport (SQLite file + leases in another
SQLite file). 20 customers get 10 events each, keyed by customer (the partition key): both workers
handle some, each shard queue is consumed by the one worker that owns it, and every customer's events
are handled in order. Then one worker stops: the other takes over its shards and the next 10 events
of every customer, still in order. Waits are bounded polls, not measurements.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connectors.base import Delivery, OutgoingMessage, QueueSpec, Topology, Transport
from connectors.embedded import EmbeddedTransport
from connectors.rabbitmq import RabbitMQTransport
from crm_core.db import create_db_engine
from esb.shards import ShardLeases
from esb.worker import RouteQueues, ShardConsumers

SHARDS = 4
CUSTOMERS = 20
EVENTS = 10
LEASE = 1.0
BOUND = 30.0


def eventually(condition: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {bound} s: {what}")
        time.sleep(0.02)


@dataclass
class Handled:
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (worker, queue, customer, sequence number) in the order handled
    rows: list[tuple[str, str, str, int]] = field(default_factory=list)

    def handler(self, worker: str) -> Callable[[Delivery], None]:
        def handle(delivery: Delivery) -> None:
            event = json.loads(delivery.body)
            with self.lock:
                self.rows.append((worker, delivery.queue, event["customer"], event["seq"]))
            delivery.ack()

        return handle

    def count(self) -> int:
        with self.lock:
            return len(self.rows)


@dataclass
class Setup:
    topology: Topology
    transport: Callable[[], Transport]
    leases_url: str


@pytest.fixture(params=["rabbitmq+postgresql", "embedded+sqlite"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Setup:
    topology = Topology(
        queues=(QueueSpec(name=f"{unique_name}.route", bindings=("customer.*",), shards=SHARDS),),
        exchange=f"{unique_name}.events",
        dead_letter_exchange=f"{unique_name}.dlx",
        dead_letter_queue=f"{unique_name}.dead_letter",
        retry_exchange=f"{unique_name}.retry",
    )
    if request.param == "rabbitmq+postgresql":
        url = str(request.getfixturevalue("rabbitmq_url"))
        return Setup(
            topology, lambda: RabbitMQTransport(url, reconnect_delay=0.1), request.getfixturevalue("postgres_url")
        )
    queue_db = f"sqlite:///{tmp_path / 'queue.db'}"
    return Setup(topology, lambda: EmbeddedTransport(queue_db, poll_interval=0.02), f"sqlite:///{tmp_path / 'crm.db'}")


class Worker:
    def __init__(self, name: str, setup: Setup, handled: Handled) -> None:
        self.name = name
        self.transport = setup.transport()
        self.transport.declare(setup.topology)
        self.engine = create_db_engine(setup.leases_url)
        self.executor = ThreadPoolExecutor(max_workers=1)
        spec = setup.topology.queues[0]
        self.consumers = ShardConsumers(
            self.transport,
            [RouteQueues(route="route", spec=spec, handler=handled.handler(name), executor=self.executor)],
            prefetch=10,
            restart_pause=0.1,
            join_timeout=LEASE / 4,
        )
        self.leases = ShardLeases(self.engine, name, SHARDS, lease_seconds=LEASE, scope="test")
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.leases.run, args=(self.stop_event, self.consumers.on_change))
        self.thread.start()

    def stop(self) -> None:
        if not self.stop_event.is_set():
            self.stop_event.set()
            self.thread.join(BOUND)
            assert not self.thread.is_alive()
            assert not self.consumers.shards
            self.leases.release_all()
        self.executor.shutdown()
        self.transport.close()
        self.engine.dispose()


@pytest.fixture
def workers(setup: Setup) -> Iterator[Callable[[str, Handled], Worker]]:
    started: list[Worker] = []

    def start(name: str, handled: Handled) -> Worker:
        worker = Worker(name, setup, handled)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def publish(transport: Transport, first: int) -> None:
    transport.publish(
        [
            OutgoingMessage(
                routing_key="customer.updated",
                body=json.dumps({"customer": f"C{customer:03d}", "seq": seq}).encode(),
                message_id=f"C{customer:03d}-{seq}",
                partition_key=f"C{customer:03d}",
            )
            for seq in range(first, first + EVENTS)
            for customer in range(CUSTOMERS)
        ]
    )


def in_order(rows: list[tuple[str, str, str, int]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for _, _, customer, seq in rows:
        seen.setdefault(customer, []).append(seq)
    return seen


def test_two_workers_share_the_shards_and_keep_each_customers_order(
    setup: Setup, workers: Callable[[str, Handled], Worker]
) -> None:
    handled = Handled()
    a = workers("a", handled)
    b = workers("b", handled)
    eventually(lambda: sorted([len(a.consumers.shards), len(b.consumers.shards)]) == [2, 2], "a and b own 2 each")
    publish(a.transport, 1)
    eventually(lambda: handled.count() == CUSTOMERS * EVENTS, "every event handled")
    by_worker = {worker for worker, *_ in handled.rows}
    assert by_worker == {"a", "b"}
    consumers_of = {queue: {w for w, q, *_ in handled.rows if q == queue} for _, queue, *_ in handled.rows}
    assert all(len(owners) == 1 for owners in consumers_of.values()), consumers_of
    assert in_order(handled.rows) == {f"C{c:03d}": list(range(1, EVENTS + 1)) for c in range(CUSTOMERS)}

    a.stop()
    eventually(lambda: len(b.consumers.shards) == SHARDS, "b took over a's shards")
    publish(b.transport, EVENTS + 1)
    eventually(lambda: handled.count() == 2 * CUSTOMERS * EVENTS, "the second half handled")
    assert {worker for worker, *_ in handled.rows[CUSTOMERS * EVENTS :]} == {"b"}
    assert in_order(handled.rows) == {f"C{c:03d}": list(range(1, 2 * EVENTS + 1)) for c in range(CUSTOMERS)}
