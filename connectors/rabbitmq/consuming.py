"""A consumer's connection thread and its handler threads: who may touch pika, and when a handler runs.

pika allows one thread per connection. The consuming thread only does I/O (``process_data_events``,
which keeps heartbeats going); each delivery goes to an ``Executor`` of ``concurrency`` handler
threads that start handlers in the order the messages came (FIFO; with one thread, strictly one
after the other). A handler settles its delivery from its own thread: the ``Session`` (one per
connection) marshals the operation onto the connection's thread with ``add_callback_threadsafe``
and waits for it (bounded), so a handler longer than the heartbeat neither blocks heartbeats nor
touches pika from the wrong thread.

A delivery belongs to its session: once the connection or channel is gone (the session is closed),
its unstarted deliveries are dropped (the broker delivers them again, to the next connection) and a
settle raises ``TransportError``. A handler is never started for a delivery of a closed session, nor
once the consumer is stopping: such a delivery is left unsettled for the broker to return with the
connection (``drop``), which on a single-active-consumer queue is what keeps it ahead of the rest.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pika
import structlog

from connectors.base import DeliveryHandler, dispatch
from connectors.rabbitmq.delivery import RabbitMQDelivery
from connectors.rabbitmq.errors import translated, transport_error

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class _Call:
    """One settle operation on its way to the connection's thread."""

    operation: str
    action: Callable[[], None]
    started: bool = False
    abandoned: bool = False
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Session:
    """One consumer connection's lifetime as handler threads see it: settle operations go through ``run``.

    ``timeout``: seconds a handler thread waits for its operation to start on the connection's thread
    (and again for it to finish), before it gives up with ``TransportError``.
    """

    def __init__(self, connection: Any, channel: Any, queue: str, *, timeout: float) -> None:
        self.connection = connection
        self.channel = channel
        self.queue = queue
        self.io_thread = threading.current_thread()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._open = True
        self._reason = "the consumer's connection was closed"
        self._pending: set[_Call] = set()
        #: handlers of this session's deliveries that run now (guarded by the executor's condition)
        self.running = 0

    @property
    def open(self) -> bool:
        """Whether this session's deliveries may still be handled and settled (read from any thread)."""
        return self._open and bool(self.channel.is_open) and bool(self.connection.is_open)

    def run(self, operation: str, action: Callable[[], None]) -> None:
        """Run ``action`` (pika calls on this session's channel) on the connection's thread and wait for
        it; raises ``TransportError`` if it failed, if the session is closed, or after the timeout."""
        if threading.current_thread() is self.io_thread:
            with translated(operation):
                action()
            return
        call = _Call(operation, action)
        with self._lock:
            if not self._open:
                raise transport_error(f"{self._reason}; the broker delivers the message again", operation)
            self._pending.add(call)
        try:
            self.connection.add_callback_threadsafe(functools.partial(self._execute, call))
        except Exception as exc:  # the connection is closed or closing
            with self._lock:
                self._pending.discard(call)
            raise transport_error(
                f"connection closed ({type(exc).__name__}); the broker delivers the message again", operation
            ) from exc
        if not call.done.wait(self._timeout):
            with self._lock:
                if not call.started:
                    call.abandoned = True
                    self._pending.discard(call)
            if call.abandoned:
                raise transport_error(
                    f"not settled: the connection's thread did not run it within {self._timeout:g} s", operation
                )
            if not call.done.wait(self._timeout):  # started: it ends when the broker answers or the connection dies
                raise transport_error(f"no answer from the broker within {2 * self._timeout:g} s", operation)
        if call.error is not None:
            raise call.error

    def _execute(self, call: _Call) -> None:
        """On the connection's thread."""
        with self._lock:
            if call.abandoned or call.done.is_set():
                return
            call.started = True
        try:
            with translated(call.operation):
                call.action()
        except Exception as exc:
            call.error = exc
        finally:
            with self._lock:
                self._pending.discard(call)
            call.done.set()

    def close(self, reason: str) -> None:
        """On the connection's thread, once it has stopped serving this session: every waiting settle
        fails with ``TransportError`` (its message comes back by itself) and no handler starts any more."""
        with self._lock:
            self._open = False
            self._reason = reason[:300]
            calls, self._pending = list(self._pending), set()
        for call in calls:
            call.abandoned = True
            call.error = transport_error(f"{self._reason}; the broker delivers the message again", call.operation)
            call.done.set()


def drop(connection: Any, *, timeout: float) -> None:
    """End a ``pika.BlockingConnection`` the way a dying process does: close its socket, no AMQP closing
    handshake, then let pika notice (at most ``timeout`` seconds). Never raises.

    Why (RabbitMQ 3.10.8, seen in ``tests/connectors/test_consumer_handover.py`` and by hand): on a
    quorum queue with a single active consumer, a consumer's ``basic.cancel``, and equally a clean
    channel or connection close, makes the next consumer active at once, and the messages the old one
    still held go back *behind* the ready ones (held 1, 2, 3; ready 4 .. 9: the next consumer sees 4 .. 9,
    then 1, 2, 3). A nack before the cancel does not help: the broker delivers the returned messages to
    the same consumer again before the cancel arrives. A connection lost without a close is handled
    as the consumer's process going down: its messages are returned in their order ahead of the ready
    ones, and only then is the next consumer activated (1, 2, 3, 4 .. 9), as when a worker is killed.
    """
    try:
        # pika's own way to give a connection up without the closing handshake (its heartbeat timeout
        # does this); there is no public call for it
        connection._impl._terminate_stream(pika.exceptions.StreamLostError("dropped by the consumer"))
    except Exception as exc:  # a pika without it: the caller's clean close follows, order is not kept
        log.warning("cannot drop the consumer connection; closing it instead", error=repr(exc)[:300])
        return
    deadline = time.monotonic() + timeout
    with suppress(Exception):  # pika raises the loss it was told about
        while connection.is_open and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)


class Executor:
    """``concurrency`` handler threads for one ``consume`` call; they outlive its connections.

    With ``shared`` (the caller's executor, e.g. one per route shared by its shards' consumers) no
    threads of its own: each delivery submits one task there that starts the oldest waiting delivery,
    so deliveries start in the order they came, and ``withdraw`` still takes back unstarted ones.
    """

    def __init__(
        self,
        handler: DeliveryHandler,
        concurrency: int,
        queue: str,
        stop: threading.Event,
        shared: futures.Executor | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._handler = handler
        self._queue = queue
        self._stop = stop
        self._condition = threading.Condition()
        self._items: deque[tuple[Session, RabbitMQDelivery]] = deque()
        self._closed = False
        self._shared = shared
        self._threads = (
            []
            if shared is not None
            else [
                threading.Thread(target=self._work, name=f"handler {queue[:60]} #{index}", daemon=True)
                for index in range(concurrency)
            ]
        )
        for thread in self._threads:
            thread.start()

    def submit(self, session: Session, delivery: RabbitMQDelivery) -> None:
        with self._condition:
            self._items.append((session, delivery))
            self._condition.notify()
        if self._shared is not None:
            self._shared.submit(self._one)

    def _one(self) -> None:
        """A task on the shared executor: start the oldest waiting delivery, if one is left."""
        with self._condition:
            if not self._items:
                return  # withdrawn meanwhile
            session, delivery = self._items.popleft()
            session.running += 1
        self._run(session, delivery)

    def _run(self, session: Session, delivery: RabbitMQDelivery) -> None:
        """Handle a delivery taken from the queue (``session.running`` counted it), then uncount it."""
        try:
            self._handle(session, delivery)
        finally:
            with self._condition:
                session.running -= 1
                self._condition.notify_all()

    def withdraw(self, session: Session) -> list[RabbitMQDelivery]:
        """Take back the unstarted deliveries of ``session``, in order."""
        with self._condition:
            taken = [delivery for owner, delivery in self._items if owner is session]
            self._items = deque(item for item in self._items if item[0] is not session)
            return taken

    def running(self, session: Session) -> int:
        with self._condition:
            return session.running

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._items and not self._closed:
                    self._condition.wait()
                if not self._items:
                    return
                session, delivery = self._items.popleft()
                session.running += 1
            self._run(session, delivery)

    def _handle(self, session: Session, delivery: RabbitMQDelivery) -> None:
        if not session.open:
            # its connection is gone: the broker delivers it again; no handler may act on it now
            log.debug("delivery of a closed connection dropped", queue=self._queue, message_id=delivery.message_id)
            return
        if self._stop.is_set():
            # left unsettled: the consumer drops its connection once its running handlers are done, and
            # the broker returns it ahead of the queue's ready messages (a nack now would put it behind)
            log.debug("delivery of a stopping consumer left to the broker", queue=self._queue)
            return
        dispatch(self._handler, delivery)

    def close(self, timeout: float) -> None:
        """Let the threads end once nothing is left for them; waits at most ``timeout`` seconds in all."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._shared is not None:  # tasks of ours still queued there find nothing left to start
            with self._condition:
                while self._items and time.monotonic() < deadline:
                    self._condition.wait(0.05)


__all__ = ["Executor", "Session", "drop"]
