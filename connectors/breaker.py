"""A circuit breaker per back office, and the gate a route passes before each delivery.

A back office that fails every request (an outage) must pause the routes that call it instead of
walking every queued message through its retry schedule; a request that fails the same way on
every try while the others succeed (a poison message) must not pause anything. So the breaker
counts *consecutive* transient failures of one system (Michael Nygard, *Release It!*, "Circuit
Breaker"; the consecutive-failure rule of pybreaker): a success in between resets the count, so
a poison message never opens it. Failures are counted per *message*: a message that failed
before and fails again since the last success adds nothing, so a poison message retried with no
other traffic in between (its retries come after the backlog, or the route is idle) does not open
it either. ``failures`` in a row open it; while open, routes that call the
system wait before taking their next delivery; after ``interval`` seconds one delivery goes
through as a probe (half-open): its success closes the breaker, its failure opens it for another
interval. Business refusals and bad input (``PermanentError``) are answers: they count as success.

Why not pybreaker: its ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call,
which would serialise a route's concurrent deliveries, and it has no way to *wait* for the
half-open probe instead of failing fast; what is kept from it is the state model and the defaults.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from enum import StrEnum

import structlog

from canonical_model.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)


#: message keys a breaker remembers as failed since its last success (it opens long before, at ``failures``)
FAILING_KEYS_MAX = 10_000


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """The breaker of one back office (``system``, as the connector names it in its errors: ``erp``).

    ``failures``: consecutive transient failures that open it (>= 1); ``interval``: seconds it stays
    open before one probe may go (> 0); ``clock``: monotonic seconds (tests may pass their own).
    Thread-safe; shared by every route of the process that calls the system.
    """

    def __init__(
        self,
        system: str,
        *,
        failures: int = 5,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or interval <= 0:
            raise ValueError("failures must be >= 1 and interval > 0")
        self.system = system
        self.failures = failures
        self.interval = interval
        self._clock = clock
        self._lock = threading.Condition()
        self._state = BreakerState.CLOSED
        self._count = 0
        self._opened_at = 0.0
        self._probing = False
        #: keys (message ids) of the deliveries that failed since the last success, at most FAILING_KEYS_MAX
        self._failing: set[str] = set()
        #: probes let through so far (for tests and the operator)
        self.probes = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def concerns(self, error: BaseException) -> bool:
        """Whether ``error`` says that this system failed (a transient error it raised)."""
        return isinstance(error, TransientError) and error.system == self.system

    def wait(self, stop: threading.Event) -> bool:
        """Block while the breaker is open; returns True when a delivery may go (closed, or the one
        probe of a half-open breaker: the caller must then call ``record``), False when ``stop`` is set."""
        with self._lock:
            while not stop.is_set():
                if self._state is BreakerState.CLOSED:
                    return True
                remaining = self._opened_at + self.interval - self._clock()
                if self._state is BreakerState.OPEN and remaining <= 0:
                    self._state = BreakerState.HALF_OPEN
                if self._state is BreakerState.HALF_OPEN and not self._probing:
                    self._probing = True
                    self.probes += 1
                    log.info("circuit breaker half-open: probing", system=self.system, probe=self.probes)
                    return True
                # open, or another delivery is the probe: wait for its outcome or the interval's end
                self._lock.wait(timeout=min(max(remaining, 0.05), 0.5))
            return False

    def record(self, error: BaseException | None, key: str | None = None) -> None:
        """The outcome of a delivery that ``wait`` let through: ``None`` (success), or its error. ``key``
        (the message id): a failure of a message that already failed since the last success is not
        counted again (a poison message retried alone is no outage); None: every failure counts."""
        failed = error is not None and self.concerns(error)
        neutral = error is not None and not failed and not isinstance(error, PermanentError)
        with self._lock:
            probe, self._probing = self._probing and self._state is BreakerState.HALF_OPEN, False
            if failed:
                if key is None or key not in self._failing:
                    self._count += 1
                if key is not None and len(self._failing) < FAILING_KEYS_MAX:
                    self._failing.add(key)
                if probe or (self._state is BreakerState.CLOSED and self._count >= self.failures):
                    self._open(error)
            elif neutral and not probe:
                pass  # another system failed: says nothing about this one
            else:
                if self._state is not BreakerState.CLOSED:
                    log.info("circuit breaker closed", system=self.system)
                self._state, self._count = BreakerState.CLOSED, 0
                self._failing.clear()
            self._lock.notify_all()

    def _open(self, error: BaseException | None) -> None:
        if self._state is not BreakerState.OPEN:
            log.warning(
                "circuit breaker open: pausing the routes that call this system",
                system=self.system,
                consecutive_failures=self._count,
                retry_in=self.interval,
                error=str(error)[:300],
            )
        self._state, self._opened_at = BreakerState.OPEN, self._clock()


class RouteGate:
    """What a route passes before each delivery: every breaker of the systems it calls."""

    def __init__(self, breakers: Sequence[CircuitBreaker], stop: threading.Event) -> None:
        self._breakers = tuple(breakers)
        self._stop = stop

    def enter(self) -> bool:
        """Wait until every breaker lets a delivery go; False when the worker is stopping."""
        return all(breaker.wait(self._stop) for breaker in self._breakers)

    def leave(self, error: BaseException | None, key: str | None = None) -> None:
        for breaker in self._breakers:
            breaker.record(error, key)


class Breakers:
    """One breaker per system for a process, made on first use with the same settings."""

    def __init__(self, *, failures: int = 5, interval: float = 30.0) -> None:
        self._failures = failures
        self._interval = interval
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def of(self, system: str) -> CircuitBreaker:
        with self._lock:
            if system not in self._breakers:
                self._breakers[system] = CircuitBreaker(system, failures=self._failures, interval=self._interval)
            return self._breakers[system]

    def gate(self, systems: Sequence[str], stop: threading.Event) -> RouteGate | None:
        """The gate of a route calling ``systems`` (None when it calls none)."""
        return RouteGate([self.of(system) for system in systems], stop) if systems else None


__all__ = ["FAILING_KEYS_MAX", "BreakerState", "Breakers", "CircuitBreaker", "RouteGate"]
