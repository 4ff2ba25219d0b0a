"""RabbitMQ consumers: handlers off the connection's thread, settles marshalled back onto it, and what
happens to deliveries when the connection goes. Real broker; connections are closed with the broker's own
``rabbitmqctl close_connection`` (only this test's, found by their connection name: the broker is shared),
or cut in a TCP proxy in front of the broker while it is "down".
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from canonical_model.errors import TransportError
from connectors.base import Delivery, QueueSpec, Topology
from connectors.rabbitmq import RabbitMQTransport
from tests.connectors.rabbit_helpers import (
    WAIT,
    close_connections,
    connections,
    consuming,
    declared,
    message,
    topology_of,
    wait_for,
)
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def client_name(unique_name: str) -> str:
    return f"esb-test-{unique_name}"


@pytest.fixture
def transport(rabbitmq_url: str, client_name: str) -> Iterator[RabbitMQTransport]:
    transport = RabbitMQTransport(rabbitmq_url, client_name=client_name)
    yield transport
    transport.close()


@pytest.fixture
def topology(transport: RabbitMQTransport, unique_name: str) -> Iterator[Topology]:
    with declared(transport, topology_of(unique_name, QueueSpec(f"{unique_name}.orders", ("order.*",)))) as topology:
        yield topology


def test_a_handler_of_6_s_with_a_heartbeat_of_2_s_is_acked_once(
    rabbitmq_url: str, client_name: str, topology: Topology
) -> None:
    """The connection's thread keeps heartbeats going while the handler runs in its own thread: the
    broker keeps the connection, the ack goes through, and the message is never delivered again."""
    transport = RabbitMQTransport(rabbitmq_url, heartbeat=2, client_name=client_name)
    calls: list[str | None] = []
    acked = threading.Event()
    ack_errors: list[BaseException] = []

    def slow(delivery: Delivery) -> None:
        calls.append(delivery.message_id)
        time.sleep(6)  # a back-office call three heartbeats long
        try:
            delivery.ack()
            acked.set()
        except BaseException as exc:
            ack_errors.append(exc)
            raise

    try:
        transport.declare(topology)
        transport.publish([message("order.placed", b"slow", "m-slow")])
        with consuming(transport, topology.queues[0].name, slow):
            assert acked.wait(WAIT), f"not acked: {ack_errors}"
        # acked on its own connection: the broker cannot deliver it again
        assert calls == ["m-slow"]
        assert transport.message_count(topology.queues[0].name) == 0
    finally:
        transport.close()


def test_buffered_deliveries_of_a_dropped_connection_are_not_handled(
    transport: RabbitMQTransport, client_name: str, topology: Topology
) -> None:
    """Prefetch 20, one slow handler: the broker drops the consumer's connection while the first message
    is being handled. None of the other 19 buffered deliveries of that connection is handed to a handler
    (the broker delivers them again, to the next connection), the first one's ack fails, and every
    message is handled once on the new connection."""
    queue = topology.queues[0].name
    runs: list[tuple[int, str | None]] = []  # (id of the delivery's connection generation, message id)
    generations: dict[int, int] = {}
    first_started = threading.Event()
    release = threading.Event()
    first_ack: list[BaseException | None] = []
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        session = id(delivery._settler.__self__)  # type: ignore[attr-defined]  # the Session: one per connection
        generation = generations.setdefault(session, len(generations))
        runs.append((generation, delivery.message_id))
        if generation == 0:
            first_started.set()
            assert release.wait(WAIT)
            try:
                delivery.ack()
                first_ack.append(None)
            except TransportError as exc:
                first_ack.append(exc)
            return
        delivery.ack()
        if len([r for r in runs if r[0] == 1]) == 20:
            done.set()

    transport.publish([message("order.placed", f"{n}".encode(), f"m-{n:02d}") for n in range(20)])
    with consuming(transport, queue, handler, prefetch=20):
        assert first_started.wait(WAIT)
        wait_for(lambda: transport.message_count(queue) == 0, "all 20 buffered by the consumer")
        before = connections(f"{client_name} consumer")
        assert close_connections(f"{client_name} consumer") == 1
        # the consumer is back on a new connection while the first handler still runs
        wait_for(lambda: set(connections(f"{client_name} consumer")) - set(before) != set(), "a new connection")
        release.set()
        assert done.wait(WAIT), f"runs: {runs}"
    assert [r for r in runs if r[0] == 0] == [(0, "m-00")], "a delivery of the dropped connection was handled"
    assert isinstance(first_ack[0], TransportError)
    second = [message_id for generation, message_id in runs if generation == 1]
    assert sorted(second) == [f"m-{n:02d}" for n in range(20)]
    assert Counter(second).most_common(1)[0][1] == 1
    assert second == sorted(second), "the new connection's deliveries in queue order"
    assert transport.message_count(queue) == 0


def test_consumers_reconnect_within_5_s_of_the_broker_being_back(
    rabbitmq_url: str, topology: Topology, unique_name: str
) -> None:
    """The broker is unreachable for 16 s (a TCP proxy in front of it refuses every connection; the
    consumer's attempts keep failing and its delay doubles), then back: the consumer consumes again within
    5 s (reconnect delays capped at ``reconnect_max_delay``, 2 s by default). With the old settings (cap
    30 s, three connection attempts per try) it took 7.7 s: the outage is long enough to tell them apart."""
    broker = urlsplit(rabbitmq_url)
    proxy = TcpProxy((broker.hostname or "127.0.0.1", broker.port or 5672)).start()
    through_proxy = broker._replace(netloc=f"{broker.username}:{broker.password}@127.0.0.1:{proxy.port}")
    flaky = RabbitMQTransport(urlunsplit(through_proxy), client_name=f"esb-test-{unique_name}-proxied")
    direct = RabbitMQTransport(rabbitmq_url)
    handled: list[float] = []
    try:
        flaky.declare(topology)
        direct.declare(topology)
        with consuming(flaky, topology.queues[0].name, lambda d: (d.ack(), handled.append(time.monotonic()))):
            direct.publish([message("order.placed", b"before", "m-before")])
            wait_for(lambda: len(handled) == 1, "the first message")
            proxy.cut()  # down: existing connections reset, new ones refused
            time.sleep(16)
            direct.publish([message("order.placed", b"after", "m-after")])
            back = time.monotonic()
            proxy.restore()
            wait_for(lambda: len(handled) == 2, "the message after the outage")
        took = handled[1] - back
        print(f"consumer handled a message {took:.2f} s after the broker was back")
        assert took < 5.0
    finally:
        flaky.close()
        direct.close()
        proxy.cut()


def test_stop_gives_back_unstarted_deliveries_and_waits_for_the_running_handler(
    transport: RabbitMQTransport, topology: Topology
) -> None:
    queue = topology.queues[0].name
    started = threading.Event()
    release = threading.Event()
    handled: list[str | None] = []

    def handler(delivery: Delivery) -> None:
        started.set()
        assert release.wait(WAIT)
        delivery.ack()  # settled during the stop: the connection is still open for it
        handled.append(delivery.message_id)

    transport.publish([message("order.placed", b"x", f"m-{n}") for n in range(5)])
    stop = threading.Event()
    thread = threading.Thread(
        target=transport.consume, args=(queue, handler), kwargs={"stop": stop, "prefetch": 10}, daemon=True
    )
    thread.start()
    assert started.wait(WAIT)
    stop.set()
    threading.Timer(0.5, release.set).start()  # the handler finishes after stop was set
    thread.join(WAIT)
    assert not thread.is_alive()
    assert handled == ["m-0"]
    wait_for(lambda: transport.message_count(queue) == 4, "the four unstarted messages back in the queue")


def test_handlers_run_concurrently_and_start_in_queue_order(transport: RabbitMQTransport, topology: Topology) -> None:
    """concurrency 3: three handlers run at once (a barrier of three passes only then); they start in the
    order the messages came."""
    queue = topology.queues[0].name
    barrier = threading.Barrier(3, timeout=WAIT)
    started: list[str | None] = []
    lock = threading.Lock()
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        with lock:
            started.append(delivery.message_id)
        if int((delivery.message_id or "m-0").split("-")[1]) < 3:
            barrier.wait()
        delivery.ack()
        with lock:
            if len(started) == 9:
                done.set()

    transport.publish([message("order.placed", b"x", f"m-{n}") for n in range(9)])
    with consuming(transport, queue, handler, concurrency=3):
        assert done.wait(WAIT)
    assert sorted(started[:3]) == ["m-0", "m-1", "m-2"]
    assert sorted(started) == [f"m-{n}" for n in range(9)]
    assert transport.message_count(queue) == 0


def test_a_second_consumer_of_an_exclusive_queue_waits_and_takes_over(
    rabbitmq_url: str, client_name: str, topology: Topology
) -> None:
    """Single active consumer: the second consumer gets nothing while the first runs (and is no error:
    one connection, no reconnects), then takes over when the first stops, in order: what the first one still
    held comes back ahead of the rest (see ``RabbitMQTransport._wind_down``)."""
    queue = topology.queues[0].name
    first_transport = RabbitMQTransport(rabbitmq_url, client_name=f"{client_name}-a")
    second_transport = RabbitMQTransport(rabbitmq_url, client_name=f"{client_name}-b")
    got: dict[str, list[str | None]] = {"a": [], "b": []}

    def recorder(name: str) -> Callable[[Delivery], None]:
        def handle(delivery: Delivery) -> None:
            got[name].append(delivery.message_id)
            delivery.ack()

        return handle

    try:
        first_transport.declare(topology)
        with consuming(first_transport, queue, recorder("a")) as first_stop:
            wait_for(lambda: len(connections(f"{client_name}-a consumer")) == 1, "the first consumer")
            with consuming(second_transport, queue, recorder("b")):
                wait_for(lambda: len(connections(f"{client_name}-b consumer")) == 1, "the second consumer")
                second_connection = set(connections(f"{client_name}-b consumer"))
                first_transport.publish([message("order.placed", b"x", f"m-{n}") for n in range(10)])
                wait_for(lambda: len(got["a"]) == 10, "ten messages to the active consumer")
                assert got["b"] == []
                first_stop.set()
                first_transport.publish([message("order.placed", b"y", f"m-{n}") for n in range(10, 15)])
                wait_for(lambda: len(got["b"]) == 5, "the second consumer taking over")
                assert set(connections(f"{client_name}-b consumer")) == second_connection, "it reconnected"
    finally:
        first_transport.close()
        second_transport.close()
    assert got["b"] == [f"m-{n}" for n in range(10, 15)]
