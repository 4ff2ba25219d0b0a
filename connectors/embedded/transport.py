"""The embedded transport: the RabbitMQ contract on a database, for running with no broker.

Durable on commit (SQLite in WAL mode with synchronous=FULL, or PostgreSQL), shared by several
processes. A consumer leases the messages it claims and renews the leases while its handlers run
(``connectors.embedded.consuming``); a lease that runs out (its consumer died) makes them ready
again. Only hand-overs to a handler count as deliveries (``connectors.embedded.store``), so the
queue's delivery limit dead-letters a message that keeps killing its consumer, never one that was
only claimed. A delayed retry makes the same row ready again later. Sharded queues and the consumer
lease of exclusive queues: see ``connectors.embedded.schema``. Publishes and requeues in this
process wake its consumers at once; other processes' publishes are seen at the next poll
(``poll_interval``).

Leases use this machine's clock: processes sharing a PostgreSQL database from several machines
need synchronised clocks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Executor

import structlog
from sqlalchemy.engine import make_url

from canonical_model.errors import TransportError
from connectors.base import Delivery, DeliveryHandler, OutgoingMessage, Topology, Transport
from connectors.embedded.consuming import ConsumeLoop, LoopSettings
from connectors.embedded.database import (
    create_transport_engine,
    database_key,
    is_memory,
    wakeup_for,
    write_lock_for,
)
from connectors.embedded.delivery import EmbeddedDelivery
from connectors.embedded.store import Store, transport_error

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
        file = parsed.get_backend_name() == "sqlite" and not is_memory(parsed)
        write_lock = write_lock_for(database_key(parsed)) if file else None
        self._store = Store(self._engine, serialize=is_memory(parsed), write_lock=write_lock)
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

    def send_to_queue(self, queue: str, message: OutgoingMessage) -> None:
        self._store.put(queue, message)
        self._wakeup.notify()

    def consume(
        self,
        queue: str,
        handler: DeliveryHandler,
        *,
        stop: threading.Event,
        prefetch: int = 50,
        concurrency: int = 1,
        executor: Executor | None = None,
    ) -> None:
        """Deliver ``queue``'s messages to ``handler`` in an executor (``concurrency`` threads, or the caller's
        ``executor``) until ``stop`` is set; see ``connectors.embedded.consuming``. A sharded queue's group
        name is no queue to consume (``TransportError``): consume its shards (``QueueSpec.queue_names``)."""
        delay = self._reconnect_delay
        while True:
            if stop.is_set():
                return
            try:
                info = self._store.queue_info(queue, "consume")
                break
            except TransportError as exc:
                log.warning("cannot read the queue; retrying", queue=queue, error=str(exc)[:300], retry_in=delay)
                stop.wait(delay)
                delay = min(delay * 2, self._reconnect_max_delay)
        if info.shards > 1:
            raise transport_error(f"queue {queue!r} is a group of {info.shards} shards: consume its shards", "consume")
        settings = LoopSettings(
            lease_seconds=self._lease_seconds,
            poll_interval=self._poll_interval,
            reconnect_delay=self._reconnect_delay,
            reconnect_max_delay=self._reconnect_max_delay,
        )
        loop = ConsumeLoop(
            self._store,
            self._wakeup,
            info,
            handler,
            stop=stop,
            prefetch=prefetch,
            concurrency=concurrency,
            executor=executor,
            settings=settings,
        )
        loop.run()

    def get(self, queue: str) -> Delivery | None:
        """One message, handed over at once (its lease runs ``lease_seconds``); ignores the consumer lease
        of an exclusive queue (for tools and tests). On a sharded group: the oldest of its shards' messages."""
        info = self._store.queue_info(queue, "get")
        if info.shards > 1:
            shard = self._store.oldest_ready_shard(info)
            if shard is None:
                return None
            info = self._store.queue_info(shard, "get")
        claim = self._store.claim(info, 1, self._lease_seconds)
        if not claim.messages:
            return None
        message = claim.messages[0]
        previous = self._store.hand_over(message)
        if previous is None:
            return None
        return EmbeddedDelivery(
            self._store, message, info, previous_deliveries=previous, on_requeue=self._wakeup.notify
        )

    def message_count(self, queue: str) -> int:
        """Ready messages (a sharded group: of all its shards; a delayed retry is not ready before its time)."""
        return self._store.count_ready(queue)

    def purge(self, queue: str) -> int:
        return self._store.purge(queue)

    def close(self) -> None:
        self._engine.dispose()


__all__ = ["DEFAULT_URL", "EmbeddedTransport"]
