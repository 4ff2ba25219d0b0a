"""The embedded transport: the RabbitMQ contract on a database, for running with no broker.

Durable on commit (SQLite in WAL mode with synchronous=FULL, or PostgreSQL), shared by several
processes. A consumer leases the messages it claims; a lease that runs out (its consumer died, or
took longer than ``lease_seconds``) makes them ready again, counted as a delivery, so the queue's
delivery limit also dead-letters a message that keeps killing its consumer. Publishes and
requeues in this process wake its consumers at once; other processes' publishes are seen at the
next poll (``poll_interval``).

Leases use this machine's clock: processes sharing a PostgreSQL database from several machines
need synchronised clocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import structlog
from sqlalchemy.engine import make_url

from canonical_model.errors import TransportError
from connectors.base import Delivery, DeliveryHandler, OutgoingMessage, Topology, Transport, dispatch
from connectors.embedded.database import create_transport_engine, database_key, is_memory, wakeup_for
from connectors.embedded.delivery import EmbeddedDelivery
from connectors.embedded.store import Claimed, QueueInfo, Store

log = structlog.get_logger(__name__)

DEFAULT_URL = "sqlite:///.esb/esb.db"


class EmbeddedTransport(Transport):
    name = "embedded"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        lease_seconds: float = 30,
        poll_interval: float = 0.05,
        busy_timeout: float = 30,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
    ) -> None:
        parsed = make_url(url)
        self._engine = create_transport_engine(url, busy_timeout=busy_timeout)
        self._store = Store(self._engine, serialize=is_memory(parsed))
        self._wakeup = wakeup_for(database_key(parsed))
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._exchange = Topology().exchange
        self._tables_ready = False

    def declare(self, topology: Topology) -> None:
        if not self._tables_ready:
            self._store.create_tables()
            self._tables_ready = True
        self._store.declare(topology)
        self._exchange = topology.exchange

    def delete(self, topology: Topology) -> None:
        """Delete the queues (with their messages), bindings and exchanges of ``topology``."""
        self._store.delete(topology)

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        self._store.publish(self._exchange, messages)
        self._wakeup.notify()

    def consume(self, queue: str, handler: DeliveryHandler, *, stop: threading.Event, prefetch: int = 50) -> None:
        delay = self._reconnect_delay
        info: QueueInfo | None = None
        while not stop.is_set():
            seen = self._wakeup.generation
            try:
                if info is None:
                    info = self._store.queue_info(queue, "consume")
                batch: list[Claimed] = []
                if self._store.has_ready(queue):
                    batch, lease_until = self._store.claim(info, prefetch, self._lease_seconds)
            except TransportError as exc:
                log.warning("cannot claim; retrying", queue=queue, error=str(exc), retry_in=delay)
                stop.wait(delay)
                delay = min(delay * 2, self._reconnect_max_delay)
                continue
            delay = self._reconnect_delay
            if batch:
                self._deliver(info, batch, lease_until, handler, stop)
            else:
                self._wakeup.wait(seen, self._poll_interval)

    def _deliver(
        self, info: QueueInfo, batch: list[Claimed], lease_until: float, handler: DeliveryHandler, stop: threading.Event
    ) -> None:
        token = batch[0].lease_token
        lost: set[int] = set()
        for index, message in enumerate(batch):
            rest = [m.id for m in batch[index:] if m.id not in lost]
            if stop.is_set():
                self._give_back(rest, token)
                return
            if message.id in lost:
                continue
            if time.time() > lease_until - self._lease_seconds / 2:
                # a long batch: renew its lease, or another consumer takes what is not done yet
                try:
                    kept, lease_until = self._store.renew(rest, token, self._lease_seconds)
                except TransportError as exc:
                    log.warning("cannot renew lease", queue=info.name, error=str(exc))
                else:
                    lost.update(set(rest) - kept)
                    if message.id in lost:
                        continue
            dispatch(handler, self._delivery(message, info))

    def _give_back(self, ids: list[int], token: str) -> None:
        try:
            self._store.release(ids, token)
        except TransportError as exc:  # their lease runs out instead
            log.warning("cannot release claimed messages", error=str(exc))
        self._wakeup.notify()

    def _delivery(self, message: Claimed, info: QueueInfo) -> EmbeddedDelivery:
        return EmbeddedDelivery(self._store, message, info, on_requeue=self._wakeup.notify)

    def get(self, queue: str) -> Delivery | None:
        info = self._store.queue_info(queue, "get")
        batch, _ = self._store.claim(info, 1, self._lease_seconds)
        return self._delivery(batch[0], info) if batch else None

    def message_count(self, queue: str) -> int:
        return self._store.count_ready(queue)

    def purge(self, queue: str) -> int:
        return self._store.purge(queue)

    def close(self) -> None:
        self._engine.dispose()


__all__ = ["DEFAULT_URL", "EmbeddedTransport"]
