"""The worker: one thread per route queue (shard) consuming it, one relaying the outbox, one pulling materials.

Threads are supervised: a thread whose loop dies (broker gone, database locked too long) is
restarted after a pause, so one failing endpoint does not stop the others. A route's handlers run
in the transport's executor (``concurrency`` per route), never in the thread that keeps the
connection; each delivery is settled by the route's ``DeliveryPolicy`` (retry schedule, attempt
journal, the circuit breakers of the back offices it calls).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import structlog

from connectors.attempts import AttemptJournal
from connectors.base import DeliveryHandler, QueueSpec, Transport
from connectors.breaker import Breakers
from connectors.consumer import DeliveryPolicy
from esb.app import Application
from esb.observability import ObservabilityServer
from esb.shards import OWNER_MAX, ShardLeases
from flows.routes import DeadLetterRoute, Route

log = structlog.get_logger(__name__)

#: characters of a thread's name
NAME_MAX = 100


def worker_name() -> str:
    """A name for this worker process unique among those sharing the shards: ``host:pid:random``."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:OWNER_MAX]


@dataclass(frozen=True)
class RouteQueues:
    """A route's queue (``spec``: one queue, or its shards), its handler and the executor its handlers run in."""

    route: str
    spec: QueueSpec
    handler: DeliveryHandler
    executor: ThreadPoolExecutor

    def queue_of(self, shard: int) -> str | None:
        """The queue of ``shard``: ``<queue>.<shard>``; the route's only queue for shard 0 when it is not
        sharded; ``None`` when the route has fewer shards."""
        names = self.spec.queue_names
        return names[shard] if shard < len(names) else None


class ShardConsumers:
    """The consume threads of the shards this worker owns (``on_change`` of ``esb.shards.ShardLeases``).

    For each owned shard, one thread per route consumes that shard's queue (with a stop event of its
    own) into the route's executor; a lost shard's threads are told to stop and joined, all of them within
    ``join_timeout`` seconds, before ``on_change`` returns (the lease is released only after): a
    consumer that has not stopped by then (a handler still running) is left to finish, and the
    transport's single active consumer keeps a second one from getting the shard's messages meanwhile.
    A consume call that fails is restarted after ``restart_pause`` seconds while its shard is owned.
    """

    def __init__(
        self,
        transport: Transport,
        routes: Sequence[RouteQueues],
        *,
        prefetch: int,
        restart_pause: float,
        join_timeout: float,
    ) -> None:
        self._transport = transport
        self._routes = list(routes)
        self._prefetch = prefetch
        self._restart_pause = restart_pause
        self._join_timeout = join_timeout
        self._running: dict[int, tuple[threading.Event, list[threading.Thread]]] = {}
        self._lock = threading.Lock()

    @property
    def shards(self) -> frozenset[int]:
        """The shards whose consumers run."""
        return frozenset(self._running)

    def on_change(self, owned: frozenset[int]) -> None:
        with self._lock:
            lost = [shard for shard in self._running if shard not in owned]
            stopping = [self._running.pop(shard) for shard in lost]
            for stop, _ in stopping:
                stop.set()
            deadline = time.monotonic() + self._join_timeout
            for _, threads in stopping:
                for thread in threads:
                    thread.join(max(deadline - time.monotonic(), 0.0))
                    if thread.is_alive():
                        log.warning("shard consumer still stopping", thread=thread.name)
            for shard in sorted(owned - self._running.keys()):
                self._running[shard] = self._start(shard)

    def _start(self, shard: int) -> tuple[threading.Event, list[threading.Thread]]:
        stop = threading.Event()
        threads = []
        for queues in self._routes:
            queue = queues.queue_of(shard)
            if queue is None:
                continue
            thread = threading.Thread(
                target=self._consume, args=(queue, queues, stop), name=f"route:{queue}"[:NAME_MAX], daemon=True
            )
            thread.start()
            threads.append(thread)
        return stop, threads

    def _consume(self, queue: str, queues: RouteQueues, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._transport.consume(
                    queue, queues.handler, stop=stop, prefetch=self._prefetch, executor=queues.executor
                )
            except Exception:
                log.exception("shard consumer failed; restarting", queue=queue)
                stop.wait(self._restart_pause)


class Worker:
    def __init__(self, app: Application, *, restart_pause: float = 2.0) -> None:
        self._app = app
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._restart_pause = restart_pause
        #: this process's name among the workers sharing the shards (host:pid:random, at most 100 characters)
        self.owner = worker_name()
        self.shard_leases: ShardLeases | None = None
        self._shard_consumers: ShardConsumers | None = None
        self._executors: list[ThreadPoolExecutor] = []
        settings = app.settings.worker
        self._journal = AttemptJournal(app.engine)
        #: one circuit breaker per back office, shared by the routes that call it
        self.breakers = Breakers(failures=settings.breaker_failures, interval=settings.breaker_interval)
        #: ``/metrics``, ``/healthz``, ``/readyz`` while started, when ``metrics.port`` is set
        self.observability: ObservabilityServer | None = None

    def policy(self, route: Route | DeadLetterRoute) -> DeliveryPolicy:
        """How ``route`` settles its deliveries here: its retry schedule (configuration first), the attempt
        journal, the gate of the back offices it calls, and the test hooks (inactive unless a test set them)."""
        settings = self._app.settings.worker
        hooks = self._app.hooks
        return DeliveryPolicy(
            retry_schedule=self._app.retry_schedule(route),
            crash_limit=settings.crash_limit,
            journal=self._journal,
            gate=self.breakers.gate(route.calls, self._stop),
            checkpoint=hooks.checkpoint,
            metrics=self._app.metrics.route(route.name),
            ack_before_work=hooks.safeguard_off("ack_before_commit"),
            sleep_retry=hooks.safeguard_off("sleep_retry"),
            requeue_pause=settings.requeue_pause,
            requeue_pause_max=settings.requeue_pause_max,
        )

    def concurrency(self, route: Route | DeadLetterRoute) -> int:
        override = self._app.settings.worker.routes.get(route.name)
        return override.concurrency if override else 1

    def start(self) -> Worker:
        """Start every thread; ``OSError`` when the metrics port is taken (raised before any thread starts)."""
        app = self._app
        settings = app.settings.worker
        metrics = app.settings.metrics
        if metrics.port is not None:  # first: a taken port fails the start before any consumer runs
            self.observability = ObservabilityServer(app, metrics.host, metrics.port).start()
        sharded: list[RouteQueues] = []
        for route in app.routes:
            sharded.append(
                RouteQueues(
                    route=route.name,
                    spec=app.topology.queue(app.queue_of(route)),
                    handler=route.consumer(self.policy(route), max_body_bytes=settings.max_message_bytes),
                    executor=self._executor(route),
                )
            )
        for dead_letter_route in app.dead_letter_routes:
            # not sharded: one queue each, consumed by every worker (its single active consumer is one of them)
            self._consume_always(
                RouteQueues(
                    route=dead_letter_route.name,
                    spec=app.topology.queue(app.queue_of(dead_letter_route)),
                    handler=dead_letter_route.consumer(self.policy(dead_letter_route)),
                    executor=self._executor(dead_letter_route),
                )
            )
        shards = max((queues.spec.shards for queues in sharded), default=1)
        if shards == 1:
            # one queue per route: the transport's single active consumer already makes one worker active and
            # hands over when it dies; a lease in the CRM database would only add a dependency on it
            for queues in sharded:
                self._consume_always(queues)
        else:
            self.shard_leases = ShardLeases(
                app.engine,
                self.owner,
                shards,
                lease_seconds=settings.shard_lease_seconds,
                scope=app.settings.namespace,
            )
            consumers = ShardConsumers(
                app.transport,
                sharded,
                prefetch=settings.prefetch,
                restart_pause=self._restart_pause,
                join_timeout=self.shard_leases.lease_seconds / 4,
            )
            self._shard_consumers = consumers
            leases = self.shard_leases
            self._spawn("shard-leases", lambda: leases.run(self._stop, consumers.on_change))
        relay = app.outbox_relay()
        self._spawn("outbox-relay", lambda: relay.run(self._stop))
        interval = app.settings.worker.material_sync_seconds
        if interval > 0:
            self._spawn("material-sync", lambda: self._sync_materials_every(interval))
        log.info("worker started", owner=self.owner, shards=shards, threads=[t.name for t in self._threads])
        return self

    def _executor(self, route: Route | DeadLetterRoute) -> ThreadPoolExecutor:
        """The route's handler threads, shared by the consumers of all its shards (``concurrency``)."""
        executor = ThreadPoolExecutor(
            max_workers=self.concurrency(route), thread_name_prefix=f"handler:{route.name}"[:NAME_MAX]
        )
        self._executors.append(executor)
        return executor

    def _consume_always(self, queues: RouteQueues) -> None:
        transport, prefetch = self._app.transport, self._app.settings.worker.prefetch
        for queue in queues.spec.queue_names:

            def consume(queue: str = queue) -> None:
                transport.consume(queue, queues.handler, stop=self._stop, prefetch=prefetch, executor=queues.executor)

            self._spawn(f"route:{queue}"[:NAME_MAX], consume)

    def _sync_materials_every(self, interval: float) -> None:
        # The first pull is the caller's (esb worker / esb demo do it before starting): this waits first,
        # the interval after a success, 1 s doubling to 60 s after a failure (esb/material_schedule.py).
        self._app.material_sync.run(self._stop)

    def _spawn(self, name: str, loop: Callable[[], None]) -> None:
        def supervised() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                except Exception:
                    log.exception("worker thread failed; restarting", thread=name)
                    self._stop.wait(self._restart_pause)

        thread = threading.Thread(target=supervised, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread (each joined up to ``timeout`` seconds), then give up the shard leases."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._shard_consumers is not None:
            self._shard_consumers.on_change(frozenset())  # in case the lease thread could not
        if self.shard_leases is not None:
            self.shard_leases.release_all()
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        if self.observability is not None:
            self.observability.stop()
            self.observability = None
        log.info("worker stopped")

    def wait(self) -> None:
        """Block until stopped (e.g. by a signal handler calling ``stop``)."""
        while not self._stop.wait(0.5):
            pass

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["Worker"]
