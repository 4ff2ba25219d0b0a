"""The embedded transport's consume loop: claims, an executor for the handlers, a lease keeper, and the
consumer lease of an exclusive queue.

The loop's thread only talks to the database: it claims up to ``prefetch`` messages (again when
half of them are done), submits them in queue order to the executor, and every ``lease_seconds / 3``
renews the leases of what it claimed and has not settled, so a handler may run far longer than a
lease. A message is handed to the handler only if it was not withdrawn (stop, consumer lease lost)
and its lease still runs; a redelivery's hand-over is counted by one UPDATE that also proves the
lease (``Store.hand_over``). What was claimed and never started is released without counting.

Exclusive queues: the loop claims only while it holds the queue's consumer lease (renewed with the
message leases, taken over by another consumer once it runs out). A consumer that takes the queue
over claims nothing while a lease of the previous one still runs: the previous consumer's claimed
messages come back first, in their order. A consumer that loses the queue (it could not renew in
time) starts nothing more, gives back what it had not started, and finishes what runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from canonical_model.errors import TransportError
from connectors.base import DeliveryHandler, dispatch
from connectors.embedded.database import Wakeup
from connectors.embedded.delivery import EmbeddedDelivery
from connectors.embedded.store import Claimed, NotHolder, QueueInfo, Store

log = structlog.get_logger(__name__)

PENDING, RUNNING, WITHDRAWN = "pending", "running", "withdrawn"


@dataclass
class _Item:
    claimed: Claimed
    lease_until: float
    state: str = PENDING
    future: Future[None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LoopSettings:
    lease_seconds: float
    poll_interval: float
    reconnect_delay: float
    reconnect_max_delay: float


class ConsumeLoop:
    """One ``Transport.consume`` call: ``run`` returns when ``stop`` is set and the started handlers are done."""

    def __init__(
        self,
        store: Store,
        wakeup: Wakeup,
        info: QueueInfo,
        handler: DeliveryHandler,
        *,
        stop: threading.Event,
        prefetch: int,
        concurrency: int,
        executor: Executor | None,
        settings: LoopSettings,
    ) -> None:
        if prefetch < 1 or concurrency < 1:
            raise ValueError("prefetch and concurrency are at least 1")
        self._store = store
        self._wakeup = wakeup
        self._info = info
        self._handler = handler
        self._stop = stop
        self._prefetch = prefetch
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(concurrency, thread_name_prefix=f"esb-{info.name[:40]}")
        self._settings = settings
        self._lease = settings.lease_seconds
        self._items: dict[int, _Item] = {}  # claimed, not finished
        self._lock = threading.Lock()
        self._changed = threading.Event()  # an item finished
        self._closing = False
        self._holder = uuid.uuid4().hex if info.exclusive else None
        self._held = False
        self._drained = True
        self._next_keep = 0.0

    # -- the loop

    def run(self) -> None:
        delay = self._settings.reconnect_delay
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except TransportError as exc:
                    log.warning("cannot claim; retrying", queue=self._info.name, error=str(exc)[:300], retry_in=delay)
                    # while handlers run, their leases are renewed in time once the database is back
                    self._stop.wait(min(delay, self._lease / 3) if self._items else delay)
                    delay = min(delay * 2, self._settings.reconnect_max_delay)
                    continue
                delay = self._settings.reconnect_delay
        finally:
            self._finish()

    def _step(self) -> None:
        if (self._items or self._held) and time.time() >= self._next_keep:
            self._keep()
        if self._holder is not None and not self._held:
            if self._items:  # lost the queue: finish what runs before asking for it again
                self._wait_for_items()
            else:
                self._acquire()
            return
        with self._lock:
            outstanding = len(self._items)
        if outstanding > self._prefetch // 2:
            self._wait_for_items()
            return
        seen = self._wakeup.generation
        if not self._store.has_ready(self._info.name):
            self._wakeup.wait(seen, self._until_keep(self._settings.poll_interval))
            return
        try:
            claim = self._store.claim(
                self._info, self._prefetch - outstanding, self._lease, holder=self._held_token(), drained=self._drained
            )
        except NotHolder:
            self._lose()
            return
        if claim.blocked:  # just taken over: the previous consumer's leases run out first
            self._stop.wait(self._until_keep(self._settings.poll_interval))
            return
        self._drained = True
        if not outstanding:
            self._next_keep = time.time() + self._lease / 3
        for message in claim.messages:
            item = _Item(message, claim.lease_until)
            with self._lock:
                self._items[message.id] = item
            item.future = self._executor.submit(self._run_item, item)

    def _held_token(self) -> str | None:
        return self._holder if self._held else None

    def _until_keep(self, longest: float) -> float:
        if not (self._items or self._held):
            return longest
        return max(0.001, min(longest, self._next_keep - time.time()))

    def _wait_for_items(self) -> None:
        # woken when there is room to claim; at least every poll interval, to see ``stop`` soon
        self._changed.clear()
        self._changed.wait(self._until_keep(self._settings.poll_interval))

    # -- the handler's side (an executor thread)

    def _run_item(self, item: _Item) -> None:
        message = item.claimed
        with self._lock:
            if item.state != PENDING or self._closing or self._stop.is_set():
                if item.state == PENDING:
                    item.state = WITHDRAWN  # released by the loop, not counted
                return
            if time.time() >= item.lease_until:  # the lease ran out before its turn: someone else may have it
                del self._items[message.id]
                return
            item.state = RUNNING
        try:
            try:
                previous = self._store.hand_over(message)
            except TransportError as exc:  # the hand-over cannot be counted: do not hand it; its lease runs out
                log.warning("cannot hand over", queue=self._info.name, error=str(exc)[:300])
                previous = None
            if previous is not None:
                delivery = EmbeddedDelivery(
                    self._store, message, self._info, previous_deliveries=previous, on_requeue=self._wakeup.notify
                )
                dispatch(self._handler, delivery)
        finally:
            with self._lock:
                self._items.pop(message.id, None)
                room = len(self._items) <= self._prefetch // 2
            if room or self._closing:  # the loop waits for room to claim more, or for the last one
                self._changed.set()

    # -- leases

    def _keep(self) -> None:
        """Renew the leases of claimed, unsettled messages (and the consumer lease held)."""
        with self._lock:
            live = [item.claimed for item in self._items.values() if item.state in (PENDING, RUNNING)]
        kept, until, held = self._store.renew(live, self._lease, queue=self._info.name, holder=self._held_token())
        self._next_keep = time.time() + self._lease / 3
        with self._lock:
            for message in live:
                item = self._items.get(message.id)
                if item is None:
                    continue
                if message.id in kept:
                    item.lease_until = until
                elif item.state == PENDING:  # lost before its turn: not ours to hand over or release
                    item.state = WITHDRAWN
                    del self._items[message.id]
        if self._held and not held:
            self._lose()

    def _acquire(self) -> None:
        assert self._holder is not None
        if self._store.acquire(self._info.name, self._holder, self._lease):
            self._held = True
            self._drained = False
            self._next_keep = time.time() + self._lease / 3
            log.info("consumer lease taken", queue=self._info.name)
            return
        _, until = self._store.holder(self._info.name)
        left = (until or 0.0) - time.time()
        self._stop.wait(min(self._lease / 3, max(self._settings.poll_interval, left + 0.01)))

    def _lose(self) -> None:
        """The consumer lease went to another consumer: start nothing more, give back what did not start."""
        self._held = False
        log.warning("consumer lease lost; giving back unstarted messages", queue=self._info.name)
        self._release(self._withdraw())

    def _withdraw(self) -> list[Claimed]:
        with self._lock:
            withdrawn = [item for item in self._items.values() if item.state in (PENDING, WITHDRAWN)]
            for item in withdrawn:
                item.state = WITHDRAWN
                del self._items[item.claimed.id]
                if item.future is not None:
                    item.future.cancel()
        return [item.claimed for item in withdrawn]

    def _release(self, claimed: list[Claimed]) -> None:
        if not claimed:
            return
        try:
            self._store.release(claimed)
        except TransportError as exc:  # their leases run out instead
            log.warning("cannot release claimed messages", queue=self._info.name, error=str(exc)[:300])
        self._wakeup.notify()

    def _finish(self) -> None:
        """Stopping: give back what did not start, keep the leases of what runs until it is done."""
        with self._lock:
            self._closing = True
        self._release(self._withdraw())
        while True:
            self._changed.clear()
            with self._lock:
                if not self._items:
                    break
            if time.time() >= self._next_keep:
                try:
                    self._keep()
                except TransportError as exc:
                    log.warning("cannot renew leases", queue=self._info.name, error=str(exc)[:300])
                    self._next_keep = time.time() + self._settings.poll_interval
            self._changed.wait(self._until_keep(self._lease / 3))
        if self._own_executor:
            self._executor.shutdown(wait=True)
        if self._held and self._holder is not None:
            try:
                self._store.give_up(self._info.name, self._holder)
            except TransportError as exc:  # it runs out instead
                log.warning("cannot give up the consumer lease", queue=self._info.name, error=str(exc)[:300])


__all__ = ["ConsumeLoop", "LoopSettings"]
