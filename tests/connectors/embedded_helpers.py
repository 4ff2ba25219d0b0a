"""Helpers of the embedded transport's tests (test_embedded_*.py): topologies, waiting, consumers in threads.

No test measures time: waits have generous limits only so that a broken transport fails instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connectors.base import Delivery, DeliveryHandler, QueueSpec, Topology, Transport

WAIT = 30.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def topology(name: str, *specs: QueueSpec, subscribers: tuple[QueueSpec, ...] = ()) -> Topology:
    return Topology(
        queues=specs or (QueueSpec(f"{name}.orders", ("order.*",), delivery_limit=3),),
        dead_letter_subscribers=subscribers,
        exchange=f"{name}.events",
        dead_letter_exchange=f"{name}.dlx",
        dead_letter_queue=f"{name}.dead_letter",
    )


def get_eventually(transport: Transport, queue: str) -> Delivery:
    found: list[Delivery] = []

    def take() -> bool:
        delivery = transport.get(queue)
        if delivery is not None:
            found.append(delivery)
        return bool(found)

    wait_for(take, f"a message in {queue}")
    return found[0]


def drain(transport: Transport, queue: str) -> list[Delivery]:
    """Every ready message of ``queue``, acked."""
    taken = []
    while (delivery := transport.get(queue)) is not None:
        delivery.ack()
        taken.append(delivery)
    return taken


@contextmanager
def consuming(transport: Transport, queue: str, handler: DeliveryHandler, **options: Any) -> Iterator[threading.Event]:
    """Consume ``queue`` in a thread for the duration of the block (yields its stop event); the thread
    must end once stop is set and the running handlers are done."""
    stop = threading.Event()
    thread = threading.Thread(
        target=transport.consume, args=(queue, handler), kwargs={"stop": stop, **options}, daemon=True
    )
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(WAIT)
        assert not thread.is_alive(), "consume did not return after stop was set"
