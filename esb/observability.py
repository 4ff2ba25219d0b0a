"""The worker's HTTP endpoints for monitoring, served without login on the metrics address (``metrics.*``).

- ``GET /metrics``: Prometheus text format: the application's counters and histograms
  (``connectors.metrics``), plus gauges read at scrape time: ``esb_outbox_backlog`` (rows to relay),
  ``esb_outbox_oldest_age_seconds`` (age of the oldest of them; 0 when none) and
  ``esb_queue_depth{queue}`` (ready messages of every route queue, shard and dead-letter queue). A
  gauge whose source is down (database, broker) is left out of that scrape, not reported as 0.
- ``GET /healthz``: 200 ``ok`` while the process serves (liveness).
- ``GET /readyz``: 200 when the database, the broker and each back office (the ERP) answer, else 503;
  the body is JSON ``{"ready": bool, "checks": {name: "ok" | reason}}``, each reason at most
  ``REASON_MAX`` characters.

Anything else answers 404. The server is a daemon thread per request (``ThreadingHTTPServer``); a
scrape or a readiness check costs a few database queries and, for ``/readyz``, one HTTP GET of the
ERP's WSDL (``ErpClient.probe``, bounded by ``PROBE_TIMEOUT`` seconds).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from canonical_model.truncation import truncate
from crm_core.outbox import backlog
from esb.app import Application

log = structlog.get_logger(__name__)

#: characters of a failed check's reason in ``/readyz``
REASON_MAX = 200
#: seconds each of connect and read of the ERP probe may take
PROBE_TIMEOUT = 2.0


class BacklogCollector(Collector):
    """Gauges read at scrape time: the outbox backlog and its oldest row's age, the depth of every queue."""

    def __init__(self, app: Application) -> None:
        self._app = app

    def queues(self) -> list[str]:
        """Every queue a route or a dead-letter subscriber consumes, and the dead letter queue."""
        topology = self._app.topology
        names = [name for spec in (*topology.queues, *topology.dead_letter_subscribers) for name in spec.queue_names]
        return [*names, topology.dead_letter_queue]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pending, oldest = backlog(self._app.sessions)
        except Exception as exc:
            log.warning("outbox backlog not read", error=truncate(f"{type(exc).__name__}: {exc}", 300))
        else:
            yield GaugeMetricFamily("esb_outbox_backlog", "Outbox rows not yet relayed (nor parked)", value=pending)
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
            yield GaugeMetricFamily(
                "esb_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet relayed; 0: none", value=age
            )
        depth = GaugeMetricFamily("esb_queue_depth", "Messages ready in a queue", labels=["queue"])
        try:
            for queue in self.queues():
                depth.add_metric([queue], self._app.transport.message_count(queue))
        except Exception as exc:
            log.warning("queue depths not read", error=truncate(f"{type(exc).__name__}: {exc}", 300))
        else:
            yield depth


def readiness(app: Application) -> dict[str, str]:
    """Each dependency's state: ``database``, ``broker`` (the transport), ``erp``; ``ok`` or why not
    (at most ``REASON_MAX`` characters)."""

    def database() -> None:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def broker() -> None:
        app.transport.message_count(app.topology.dead_letter_queue)

    checks: dict[str, Callable[[], None]] = {
        "database": database,
        "broker": broker,
        "erp": lambda: app.erp.probe(PROBE_TIMEOUT),
    }
    states: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            states[name] = truncate(f"{type(exc).__name__}: {exc}", REASON_MAX)
        else:
            states[name] = "ok"
    return states


class ObservabilityServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of ``app`` on ``host``:``port`` (0: any free port).

    ``start`` binds (raises ``OSError`` when the port is taken) and serves in a daemon thread; ``address``
    is the (host, port) bound; ``stop`` closes it.
    """

    def __init__(self, app: Application, host: str, port: int) -> None:
        self._app = app
        registry = app.metrics.registry
        self._collector = BacklogCollector(app)
        registry.register(self._collector)
        self._registry = registry
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> ObservabilityServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="observability", daemon=True)
        self._thread.start()
        log.info("metrics served", host=self.address[0], port=self.address[1])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._registry.unregister(self._collector)
        if self._thread is not None:
            self._thread.join(5.0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        app, registry = self._app, self._registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path == "/healthz":
                    self._answer(200, "text/plain; charset=utf-8", b"ok\n")
                elif path == "/readyz":
                    states = readiness(app)
                    ready = all(state == "ok" for state in states.values())
                    body = json.dumps({"ready": ready, "checks": states}).encode()
                    self._answer(200 if ready else 503, "application/json", body)
                else:
                    self._answer(404, "text/plain; charset=utf-8", b"not found\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not logged
                return None

        return Handler


__all__ = ["PROBE_TIMEOUT", "REASON_MAX", "BacklogCollector", "ObservabilityServer", "readiness"]
