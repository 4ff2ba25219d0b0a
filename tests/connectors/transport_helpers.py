"""What the transport tests share, whatever the transport: waiting, topologies in a namespace of their own,
taking one message, and consuming in a thread.

No helper measures time: waits have generous limits only so that a broken transport fails instead of hanging.
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
    """Poll ``condition`` every 20 ms; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def topology_of(
    namespace: str,
    *queues: QueueSpec,
    retry_delays: tuple[float, ...] = (),
    subscribers: tuple[QueueSpec, ...] = (),
) -> Topology:
    """A topology whose exchanges, dead letter queue and retry exchange are in ``namespace``."""
    return Topology(
        queues=queues,
        dead_letter_subscribers=subscribers,
        exchange=f"{namespace}.events",
        dead_letter_exchange=f"{namespace}.dlx",
        dead_letter_queue=f"{namespace}.dead_letter",
        retry_delays=retry_delays,
        retry_exchange=f"{namespace}.retry",
    )


def get_eventually(transport: Transport, queue: str) -> Delivery:
    """The first message ``transport.get`` finds in ``queue`` (not settled)."""
    found: list[Delivery] = []

    def take() -> bool:
        delivery = transport.get(queue)
        if delivery is not None:
            found.append(delivery)
        return bool(found)

    wait_for(take, f"a message in {queue}")
    return found[0]


@contextmanager
def consuming(
    transport: Transport,
    queue: str,
    handler: DeliveryHandler,
    *,
    stop: threading.Event | None = None,
    join_timeout: float = WAIT,
    **options: Any,
) -> Iterator[threading.Event]:
    """Consume ``queue`` in a thread for the duration of the block (yields its stop event; ``options`` go
    to ``consume``); the thread must end within ``join_timeout`` once stop is set."""
    stop = stop or threading.Event()
    thread = threading.Thread(
        target=transport.consume, args=(queue, handler), kwargs={"stop": stop, **options}, daemon=True
    )
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(join_timeout)
        assert not thread.is_alive(), "consume did not return after stop was set"
