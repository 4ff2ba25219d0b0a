"""A queue with a single active consumer changes consumer in order (issue 8, acceptance 7).

When a worker gives up a shard, its consumer of the shard queue stops while it still holds deliveries: one
whose handler runs, and prefetched ones no handler has started. The next consumer (already waiting, or
subscribing afterwards) must get the queue's messages in their order: first the ones the old consumer held
and did not handle, then the rest. Here one key's messages 0..11 are consumed by A (message 0's handler runs
while A is told to stop, 1..3 are prefetched), and B takes the queue over.

On RabbitMQ 3.10 the broker moves the queue to the next consumer at the old one's ``basic.cancel`` (and at
a clean channel or connection close), while the old consumer's unacknowledged messages are returned after
that, behind the ready ones: the old transport (cancel, then nack the unstarted) made B see
``4, 5, ..., 11, 1, 2, 3``. Embedded: the consumer lease moves only after the old consumer released what
it had not started and finished what ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.base import Delivery, QueueSpec, Topology, Transport
from connectors.embedded import EmbeddedTransport
from connectors.rabbitmq import RabbitMQTransport
from tests.connectors.rabbit_helpers import WAIT, message, rabbitmqctl, topology_of, wait_for

MESSAGES = 12
#: A's prefetch: message 0 runs, 1 .. PREFETCH - 1 wait for A's executor, the rest are ready in the queue
PREFETCH = 4

Factory = Callable[[str], Transport]

#: a consumer in a process of its own that starts message 0 and never ends it (killed by the test)
_CONSUME_AND_HANG = textwrap.dedent(
    """
    import json, sys, threading, time
    from connectors.base import QueueSpec, Topology
    from connectors.embedded import EmbeddedTransport
    from connectors.rabbitmq import RabbitMQTransport

    kind, url, queue, prefetch, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
    topology = Topology(queues=(QueueSpec(queue, ("customer.*",)),), **names)
    transport = RabbitMQTransport(url) if kind == "rabbitmq" else EmbeddedTransport(url, lease_seconds=2)
    transport.declare(topology)

    def hang(delivery):
        print("RUNNING", delivery.body.decode(), flush=True)
        time.sleep(600)

    transport.consume(queue, hang, stop=threading.Event(), prefetch=int(prefetch))
    """
)


def waiting_consumers(queue: str) -> int:
    """Consumers of ``queue`` the broker holds that are not the active one (single active consumer)."""
    rows = (line.split("\t") for line in rabbitmqctl("list_consumers", "-q", "queue_name", "active").splitlines())
    return sum(1 for row in rows if len(row) == 2 and row[0] == queue and row[1].strip() == "false")


@pytest.fixture(params=["rabbitmq", "embedded"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        request.applymarker(pytest.mark.rabbitmq)
    return str(request.param)


@pytest.fixture
def factory(request: pytest.FixtureRequest, kind: str, tmp_path: Path, unique_name: str) -> Iterator[Factory]:
    """Transports of the same broker or database, each with its own connections (as two worker processes)."""
    made: list[Transport] = []
    url = str(request.getfixturevalue("rabbitmq_url")) if kind == "rabbitmq" else f"sqlite:///{tmp_path / 'esb.db'}"

    def make(name: str) -> Transport:
        transport: Transport
        if kind == "rabbitmq":
            transport = RabbitMQTransport(url, client_name=f"esb-test-{unique_name}-{name}")
        else:
            transport = EmbeddedTransport(url, lease_seconds=2, poll_interval=0.02)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def topology(factory: Factory, unique_name: str) -> Iterator[Topology]:
    topology = topology_of(unique_name, QueueSpec(f"{unique_name}.customers", ("customer.*",)))  # exclusive
    admin = factory("admin")
    admin.declare(topology)
    yield topology
    if isinstance(admin, RabbitMQTransport):
        admin.delete(topology)


@pytest.mark.parametrize("b_waits", [True, False], ids=["next-consumer-waiting", "next-consumer-later"])
def test_a_stopping_consumer_hands_its_queue_over_in_order(
    kind: str, factory: Factory, topology: Topology, b_waits: bool
) -> None:
    queue = topology.queues[0].name
    events: list[tuple[str, str, int]] = []  # (start | end, consumer, message)
    lock = threading.Lock()
    first_runs, stop_a, stop_b, all_done = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def handler_of(name: str) -> Callable[[Delivery], None]:
        def handle(delivery: Delivery) -> None:
            number = int(delivery.body)
            with lock:
                events.append(("start", name, number))
            if name == "A" and number == 0:
                first_runs.set()
                stop_a.wait(WAIT)  # still running when A is told to stop
            delivery.ack()
            with lock:
                events.append(("end", name, number))
                if {n for event, _, n in events if event == "end"} == set(range(MESSAGES)):
                    all_done.set()

        return handle

    def consume(transport: Transport, name: str, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=transport.consume,
            args=(queue, handler_of(name)),
            kwargs={"stop": stop, "prefetch": PREFETCH},
            daemon=True,
        )
        thread.start()
        return thread

    a, b = factory("A"), factory("B")
    for transport in (a, b):
        transport.declare(topology)
    a.publish([message("customer.updated", str(n).encode(), f"m-{n}", partition_key="C-1") for n in range(MESSAGES)])
    consuming_a = consume(a, "A", stop_a)
    assert first_runs.wait(WAIT), "A never started message 0"
    consuming_b: threading.Thread | None = None
    try:
        if b_waits:
            consuming_b = consume(b, "B", stop_b)
            if kind == "rabbitmq":
                wait_for(lambda: waiting_consumers(queue) == 1, "B waiting as the second consumer")
        stop_a.set()
        consuming_a.join(WAIT + 35)
        assert not consuming_a.is_alive(), "A's consume did not return after stop"
        if consuming_b is None:
            consuming_b = consume(b, "B", stop_b)
        assert all_done.wait(WAIT), f"not every message was handled: {events}"
    finally:
        stop_a.set()
        stop_b.set()
        if consuming_b is not None:
            consuming_b.join(WAIT + 35)
    started = [number for event, _, number in events if event == "start"]
    assert started == list(range(MESSAGES)), f"messages started in this order: {started}"
    a_ended = max(index for index, event in enumerate(events) if event[:2] == ("end", "A"))
    b_started = min(index for index, event in enumerate(events) if event[:2] == ("start", "B"))
    assert a_ended < b_started, f"B started while A's handler ran: {events}"


def test_a_killed_consumer_hands_its_queue_over_in_order(
    kind: str, factory: Factory, topology: Topology, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A's process is SIGKILLed while message 0's handler runs and 1..3 are prefetched, B waiting: the
    broker (or the expired leases) give B everything in order, message 0 again first."""
    queue = topology.queues[0].name
    url = str(request.getfixturevalue("rabbitmq_url")) if kind == "rabbitmq" else f"sqlite:///{tmp_path / 'esb.db'}"
    b = factory("B")
    b.declare(topology)
    b.publish([message("customer.updated", str(n).encode(), f"m-{n}", partition_key="C-1") for n in range(MESSAGES)])
    names = {
        "exchange": topology.exchange,
        "dead_letter_exchange": topology.dead_letter_exchange,
        "dead_letter_queue": topology.dead_letter_queue,
        "retry_exchange": topology.retry_exchange,
    }
    args = [kind, url, queue, str(PREFETCH), json.dumps(names)]
    child = subprocess.Popen([sys.executable, "-c", _CONSUME_AND_HANG, *args], stdout=subprocess.PIPE, text=True)
    started: list[int] = []
    done, stop_b = threading.Event(), threading.Event()

    def handle(delivery: Delivery) -> None:
        started.append(int(delivery.body))
        delivery.ack()
        if len(started) == MESSAGES:
            done.set()

    thread = threading.Thread(
        target=b.consume, args=(queue, handle), kwargs={"stop": stop_b, "prefetch": PREFETCH}, daemon=True
    )
    try:
        assert child.stdout is not None
        running = next((line.split() for line in child.stdout if line.startswith("RUNNING")), None)
        assert running == ["RUNNING", "0"], "A never started message 0"
        thread.start()
        if kind == "rabbitmq":
            wait_for(lambda: waiting_consumers(queue) == 1, "B waiting as the second consumer")
        assert started == [], "B got messages while A was the active consumer"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(WAIT)
        assert done.wait(WAIT), f"B handled only {started}"
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(WAIT)
        stop_b.set()
        if thread.is_alive():
            thread.join(WAIT + 35)
    assert started == list(range(MESSAGES))
