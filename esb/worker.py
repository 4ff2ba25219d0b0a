"""The worker: one thread per route queue (shard) consuming it, one relaying the outbox, one pulling materials.

Threads are supervised: a thread whose loop dies (broker gone, database locked too long) is
restarted after a pause, so one failing endpoint does not stop the others. A route's handlers run
in the transport's executor (``concurrency`` per route), never in the thread that keeps the
connection; each delivery is settled by the route's ``DeliveryPolicy`` (retry schedule, attempt
journal, the circuit breakers of the back offices it calls).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import structlog

from connectors.attempts import AttemptJournal
from connectors.base import DeliveryHandler
from connectors.breaker import Breakers
from connectors.consumer import DeliveryPolicy
from esb.app import Application
from flows.routes import DeadLetterRoute, Route

log = structlog.get_logger(__name__)


class Worker:
    def __init__(self, app: Application, *, restart_pause: float = 2.0) -> None:
        self._app = app
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._restart_pause = restart_pause
        settings = app.settings.worker
        self._journal = AttemptJournal(app.engine)
        #: one circuit breaker per back office, shared by the routes that call it
        self.breakers = Breakers(failures=settings.breaker_failures, interval=settings.breaker_interval)

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
            ack_before_work=hooks.safeguard_off("ack_before_commit"),
            sleep_retry=hooks.safeguard_off("sleep_retry"),
        )

    def concurrency(self, route: Route | DeadLetterRoute) -> int:
        override = self._app.settings.worker.routes.get(route.name)
        return override.concurrency if override else 1

    def start(self) -> Worker:
        app = self._app
        settings = app.settings.worker
        consumers: list[tuple[str, str, DeliveryHandler, int]] = []
        for route in app.routes:
            handler = route.consumer(self.policy(route), max_body_bytes=settings.max_message_bytes)
            for queue in app.topology.queue(app.queue_of(route)).queue_names:
                consumers.append((route.name, queue, handler, self.concurrency(route)))
        for dead_letter_route in app.dead_letter_routes:
            handler = dead_letter_route.consumer(self.policy(dead_letter_route))
            consumers.append(
                (dead_letter_route.name, app.queue_of(dead_letter_route), handler, self.concurrency(dead_letter_route))
            )
        for _name, queue, handler, concurrency in consumers:

            def consume(queue: str = queue, handler: DeliveryHandler = handler, concurrency: int = concurrency) -> None:
                app.transport.consume(
                    queue, handler, stop=self._stop, prefetch=settings.prefetch, concurrency=concurrency
                )

            self._spawn(f"route:{queue}", consume)
        relay = app.outbox_relay()
        self._spawn("outbox-relay", lambda: relay.run(self._stop))
        interval = app.settings.worker.material_sync_seconds
        if interval > 0:
            self._spawn("material-sync", lambda: self._sync_materials_every(interval))
        log.info("worker started", threads=[t.name for t in self._threads])
        return self

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
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
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
