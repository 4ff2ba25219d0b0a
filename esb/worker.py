"""The worker: one thread per route consuming its queue, one relaying the outbox, one pulling materials.

Threads are supervised: a thread whose loop dies (broker gone, database locked too long) is
restarted after a pause, so one failing endpoint does not stop the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from types import TracebackType

import structlog

from connectors.base import DeliveryHandler
from connectors.consumer import exponential_backoff
from esb.app import Application

log = structlog.get_logger(__name__)


class Worker:
    def __init__(self, app: Application, *, restart_pause: float = 2.0) -> None:
        self._app = app
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._restart_pause = restart_pause

    def start(self) -> Worker:
        app = self._app
        prefetch = app.settings.worker.prefetch
        backoff = partial(
            exponential_backoff, first=app.settings.worker.requeue_pause, cap=app.settings.worker.requeue_pause_max
        )
        consumers: list[tuple[str, str, DeliveryHandler]] = [
            (
                route.name,
                app.queue_of(route),
                route.consumer(backoff, max_body_bytes=app.settings.worker.max_message_bytes),
            )
            for route in app.routes
        ]
        consumers += [(route.name, app.queue_of(route), route.consumer(backoff)) for route in app.dead_letter_routes]
        for name, queue, handler in consumers:

            def consume(queue: str = queue, handler: DeliveryHandler = handler) -> None:
                app.transport.consume(queue, handler, stop=self._stop, prefetch=prefetch)

            self._spawn(f"route:{name}", consume)
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
