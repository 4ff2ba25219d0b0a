"""Prometheus metrics of one process: what the consumers settled and what the back-office calls cost.

The metrics live in a registry of their own (``Metrics.registry``), one per ``esb.app.Application``,
not in prometheus-client's global default registry: two applications in one process (the tests) count
apart. The parts that count hold a small bound object (``RouteMetrics``, ``CallMetrics``) and know
nothing of Prometheus beyond it.

Names (``esb_`` prefix):

- ``esb_messages_consumed_total{route}``: deliveries a route's consumer started to settle;
- ``esb_messages_settled_total{route,outcome}``: how each ended: ``acked``, ``dead_lettered``,
  ``retried`` (a delayed retry), ``returned`` (not tried: the worker is stopping), ``requeued`` (the
  old retry, tests only);
- ``esb_handler_duration_seconds{route}``: histogram of one try (parse, type check, handler);
- ``esb_backoffice_call_duration_seconds{system,operation}``: histogram of one back-office call,
  its own retries included;
- ``esb_backoffice_call_errors_total{system,operation,error}``: calls that raised, by error class.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

#: outcomes of ``connectors.consumer.settle``
OUTCOMES = ("acked", "dead_lettered", "retried", "returned", "requeued")
#: seconds: a handler's try or a back-office call; the SOAP calls' budget reaches minutes
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: characters of a label value taken from code names (routes, operations, error classes)
LABEL_MAX = 80


class RouteMetrics:
    """The counters of one route, bound to its name."""

    def __init__(self, metrics: Metrics, route: str) -> None:
        route = route[:LABEL_MAX]
        self._consumed = metrics.consumed.labels(route=route)
        self._settled = {outcome: metrics.settled.labels(route=route, outcome=outcome) for outcome in OUTCOMES}
        self._duration = metrics.handler_seconds.labels(route=route)

    def consumed(self) -> None:
        """One delivery taken up."""
        self._consumed.inc()

    def settled(self, outcome: str, seconds: float | None) -> None:
        """The delivery's ``outcome`` (one of ``OUTCOMES``; another is ignored) and its try's duration in
        seconds (None: not tried)."""
        counter = self._settled.get(outcome)
        if counter is not None:
            counter.inc()
        if seconds is not None:
            self._duration.observe(seconds)


class CallMetrics:
    """The call metrics of one back office (``system``: ``erp``, ...)."""

    def __init__(self, metrics: Metrics, system: str) -> None:
        self._metrics = metrics
        self._system = system[:LABEL_MAX]

    def called(self, operation: str, seconds: float, error: BaseException | None) -> None:
        """One call of ``operation`` took ``seconds``; ``error``: what it raised, or None."""
        operation = operation[:LABEL_MAX]
        self._metrics.backoffice_seconds.labels(system=self._system, operation=operation).observe(seconds)
        if error is not None:
            self._metrics.backoffice_errors.labels(
                system=self._system, operation=operation, error=type(error).__name__[:LABEL_MAX]
            ).inc()


class Metrics:
    """One process's metrics in their own ``registry`` (``prometheus_client.CollectorRegistry``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.consumed = Counter(
            "esb_messages_consumed", "Deliveries a route's consumer took up", ["route"], registry=self.registry
        )
        self.settled = Counter(
            "esb_messages_settled",
            "Deliveries settled, by outcome (acked, dead_lettered, retried, returned, requeued)",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "esb_handler_duration_seconds",
            "Seconds of one try of a route's handler (parse, type check, handler)",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.backoffice_seconds = Histogram(
            "esb_backoffice_call_duration_seconds",
            "Seconds of one back-office call, its own retries included",
            ["system", "operation"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.backoffice_errors = Counter(
            "esb_backoffice_call_errors",
            "Back-office calls that raised, by error class",
            ["system", "operation", "error"],
            registry=self.registry,
        )

    def route(self, name: str) -> RouteMetrics:
        """The counters of route ``name``."""
        return RouteMetrics(self, name)

    def backoffice(self, system: str) -> CallMetrics:
        """The call metrics of back office ``system``."""
        return CallMetrics(self, system)


__all__ = ["DURATION_BUCKETS", "OUTCOMES", "CallMetrics", "Metrics", "RouteMetrics"]
