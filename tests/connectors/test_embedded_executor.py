"""The embedded consume loop: handlers in an executor, a lease keeper, and what counts as a delivery.

- A handler may run far longer than the lease (2 s lease, 6 s handler): it completes once, its
  message is never delivered to the competing consumer, its ack works.
- A crash loop dead-letters only what was handed to a handler: six SIGKILLs of a consumer that
  had 50 of 60 messages claimed leave 59 of them untouched (the previous version dead-lettered the
  50 claimed ones, as it counted a delivery per claim; the issue measured 32 of 60).
- Claimed messages that did not start when ``stop`` is set are given back uncounted; a message whose
  lease was lost before its turn is not handed over; ``concurrency`` handlers run side by side.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from canonical_model.errors import TransportError
from connectors.base import HEADER_ERROR_REASON, Delivery, OutgoingMessage, QueueSpec
from connectors.embedded import EmbeddedTransport
from connectors.embedded.store import LeaseLost
from tests.connectors.embedded_helpers import WAIT, consuming, drain, topology, wait_for


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "esb.db"


def _messages(count: int) -> list[OutgoingMessage]:
    return [OutgoingMessage("order.placed", f"{n}".encode(), f"m-{n:02d}") for n in range(count)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_handler_far_longer_than_the_lease_completes_once(
    request: pytest.FixtureRequest, db: Path, unique_name: str, backend: str
) -> None:
    url = f"sqlite:///{db}" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    first = EmbeddedTransport(url, lease_seconds=2, poll_interval=0.02)
    rival = EmbeddedTransport(url, lease_seconds=2, poll_interval=0.02)  # another process's consumer
    first.declare(topology(unique_name))
    queue = f"{unique_name}.orders"
    handled: list[tuple[str, str | None, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def slow(delivery: Delivery) -> None:
        handled.append(("first", delivery.message_id, delivery.previous_deliveries))
        time.sleep(6)  # a back-office call three leases long
        try:
            delivery.ack()
        except TransportError as exc:
            errors.append(exc)
        done.set()

    def rival_handler(delivery: Delivery) -> None:
        handled.append(("rival", delivery.message_id, delivery.previous_deliveries))
        delivery.ack()

    try:
        with consuming(first, queue, slow):
            first.publish([OutgoingMessage("order.placed", b"slow", "m-slow")])
            wait_for(lambda: bool(handled), "the slow handler to start")
            with consuming(rival, queue, rival_handler):
                assert done.wait(WAIT)
        assert handled == [("first", "m-slow", 0)]
        assert errors == []
        assert first.get(queue) is None
    finally:
        first.close()
        rival.close()


def test_stop_gives_back_the_unstarted_messages_uncounted(db: Path, unique_name: str) -> None:
    transport = EmbeddedTransport(f"sqlite:///{db}", poll_interval=0.02)
    transport.declare(topology(unique_name))
    queue = f"{unique_name}.orders"
    transport.publish(_messages(10))
    started = threading.Event()
    go = threading.Event()
    handled: list[str | None] = []

    def blocking(delivery: Delivery) -> None:
        handled.append(delivery.message_id)
        started.set()
        go.wait(WAIT)
        delivery.ack()

    try:
        with consuming(transport, queue, blocking, prefetch=10) as stop:
            assert started.wait(WAIT)
            stop.set()  # nine claimed, not started
            go.set()
        assert handled == ["m-00"]
        assert transport.message_count(queue) == 9, "given back at once, not after their lease"
        rest = drain(transport, queue)
        assert [(d.message_id, d.previous_deliveries) for d in rest] == [(f"m-{n:02d}", 0) for n in range(1, 10)]
    finally:
        transport.close()


def test_a_message_whose_lease_was_lost_before_its_turn_is_not_handed_over(db: Path, unique_name: str) -> None:
    transport = EmbeddedTransport(f"sqlite:///{db}", lease_seconds=0.5, busy_timeout=0.1, poll_interval=0.02)
    transport.declare(topology(unique_name))
    queue = f"{unique_name}.orders"
    transport.publish(_messages(2))
    started = threading.Event()
    go = threading.Event()
    handled: list[str | None] = []
    settle_errors: list[BaseException] = []

    def blocking(delivery: Delivery) -> None:
        handled.append(delivery.message_id)
        started.set()
        go.wait(WAIT)
        try:
            delivery.ack()
        except LeaseLost as exc:
            settle_errors.append(exc)

    try:
        with consuming(transport, queue, blocking, prefetch=2):
            assert started.wait(WAIT)
            # the database is out of reach for the lease keeper (another process holds the write lock) ...
            lock = sqlite3.connect(db, isolation_level=None, timeout=WAIT)
            lock.execute("BEGIN IMMEDIATE")
            time.sleep(1.5)  # ... until both leases ran out; then another consumer claims them
            lock.execute(
                "UPDATE esb_messages SET lease_token = 'another', lease_until = ? WHERE queue = ?",
                (time.time() + 60, queue),
            )
            lock.execute("COMMIT")
            lock.close()
            go.set()
            wait_for(lambda: bool(settle_errors), "the first handler's ack to fail")
            time.sleep(0.5)  # time for a wrong hand-over of m-01 to show
        assert handled == ["m-00"], "m-01 belongs to another consumer now"
    finally:
        transport.close()


def test_concurrency_runs_that_many_handlers_side_by_side(db: Path, unique_name: str) -> None:
    transport = EmbeddedTransport(f"sqlite:///{db}", poll_interval=0.02)
    transport.declare(topology(unique_name))
    queue = f"{unique_name}.orders"
    transport.publish(_messages(8))
    barrier = threading.Barrier(4, timeout=WAIT)  # passes only with four handlers waiting at once
    acked: list[str | None] = []
    lock = threading.Lock()

    def together(delivery: Delivery) -> None:
        barrier.wait()
        delivery.ack()
        with lock:
            acked.append(delivery.message_id)

    try:
        with consuming(transport, queue, together, concurrency=4):
            wait_for(lambda: len(acked) == 8, "eight acks")
        assert sorted(acked) == [f"m-{n:02d}" for n in range(8)]
    finally:
        transport.close()


# -- a crash loop


def _hang_on_first(url: str, queue: str, said: Connection) -> None:
    """A consumer process (forked: no start-up cost) whose handler hangs on its first message."""
    transport = EmbeddedTransport(url, lease_seconds=1.0, poll_interval=0.02)

    def handler(delivery: Delivery) -> None:
        said.send(f"started {delivery.message_id} {delivery.previous_deliveries}")
        time.sleep(600)  # a back-office call the kill interrupts

    transport.consume(queue, handler, stop=threading.Event(), prefetch=50)


def _start_and_kill(url: str, queue: str) -> str:
    """Start a consumer process, wait until its handler started, SIGKILL it; returns what it said."""
    receiving, sending = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_hang_on_first, args=(url, queue, sending))
    child.start()
    try:
        assert receiving.poll(WAIT), "the consumer process never started a handler"
        return str(receiving.recv())
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(WAIT)
        assert child.exitcode == -signal.SIGKILL
        time.sleep(1.2)  # its leases run out: the next consumer finds the same 50 messages ready


def test_a_crash_loop_dead_letters_only_what_was_handed_over(db: Path, unique_name: str) -> None:
    url = f"sqlite:///{db}"
    spec = QueueSpec(f"{unique_name}.orders", ("order.*",), delivery_limit=5)
    transport = EmbeddedTransport(url, lease_seconds=1.0, poll_interval=0.02)
    transport.declare(topology(unique_name, spec))
    transport.publish(_messages(60))
    said = [_start_and_kill(url, spec.name) for _ in range(6)]

    handled: list[Delivery] = []
    try:
        with consuming(transport, spec.name, lambda d: (d.ack(), handled.append(d))):
            wait_for(lambda: len(handled) + transport.message_count(f"{unique_name}.dead_letter") >= 60, "60 settled")
        dead = drain(transport, f"{unique_name}.dead_letter")
        assert [(d.message_id, d.headers[HEADER_ERROR_REASON]) for d in dead] == [
            ("m-00", "delivery limit exceeded")
        ], f"only the message handed over six times (its queue's limit: 5), not {len(dead)}"
        # each consumer claimed 50 and handed the oldest to its handler, which its kill interrupted
        assert said == [f"started m-00 {n}" for n in range(6)], said
        assert [d.message_id for d in handled] == [f"m-{n:02d}" for n in range(1, 60)]
        # claimed by a consumer that died: counted once, as the next try of a crashed delivery may be
        assert {d.previous_deliveries for d in handled[:49]} == {1}
        assert {d.previous_deliveries for d in handled[49:]} == {0}
    finally:
        transport.close()
