"""Crash points and switched-off safeguards for fault-injection tests; inert unless a test sets them.

Two environment variables, read here only (the configuration loader leaves ``ESB_TEST_...`` alone)
and passed down by dependency injection (``Application.hooks``; no lower layer imports esb):

``ESB_TEST_CRASH_POINTS``
    A comma list of crash points: ``name`` (SIGKILL this process the 1st time the point is hit),
    ``name:N`` (the N-th time, N >= 1) or ``name@P`` (with probability P, 0 < P <= 1, at each hit).
    Names: ``CRASH_POINTS``. Before the kill, a line ``<point> <pid> <unix time>`` is appended to the
    file named by ``ESB_TEST_CRASH_LOG`` (if set), so a test can count the hits that killed.
``ESB_TEST_SAFEGUARDS_OFF``
    A comma list of safeguards to switch off, so a test can show it catches what they prevent.
    Names: ``SAFEGUARDS``.

An unknown name, a bad N or P, is a ``TestHooksError`` when the hooks are read (at start), naming
the known ones: a typo must not make a test pass by testing nothing. With neither variable set,
``checkpoint`` returns at once and nothing is logged.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from esb.config import ConfigError

CRASH_POINTS_ENV: Final = "ESB_TEST_CRASH_POINTS"
SAFEGUARDS_OFF_ENV: Final = "ESB_TEST_SAFEGUARDS_OFF"
CRASH_LOG_ENV: Final = "ESB_TEST_CRASH_LOG"

#: every crash point the product has, with where it is hit
CRASH_POINTS: Final[Mapping[str, str]] = {
    "relay.after_confirm": "outbox relay: the transport confirmed a batch; its rows are not marked yet",
    "relay.after_mark": (
        "outbox relay: a batch's rows are marked published and committed (after the confirm; with the "
        "safeguard mark_before_publish off, before the publish)"
    ),
    "route.after_erp_answer": "a route: the ERP answered; the CRM transaction is not committed yet",
    "route.after_commit": "a route: the CRM transaction committed; the message is not acked yet",
    "failed_store.after_commit": (
        "the failed-message store's subscriber: a dead letter's row is committed; the dead letter is not acked yet"
    ),
}
#: every safeguard a test may switch off, with what it keeps from happening
SAFEGUARDS: Final[Mapping[str, str]] = {
    "ack_before_commit": "a route acks only after its database commit (off: acks first; a crash loses the message)",
    "no_idempotency_key": "an ERP call carries the CRM's id as idempotency key (off: a retry may create a duplicate)",
    "mark_before_publish": "the relay marks rows only after the confirm (off: marks first; a crash loses them)",
    "sleep_retry": "a transient failure goes to a delayed retry (off: the consumer thread sleeps, then requeues)",
    "console_csrf": "a console action needs the session's CSRF token (off: a forged cross-site form acts for the user)",
}

#: the longest value of either variable read (a test's list is short; anything longer is a mistake)
_MAX_ENV_CHARS: Final = 4000


class TestHooksError(ConfigError):
    """``ESB_TEST_CRASH_POINTS`` or ``ESB_TEST_SAFEGUARDS_OFF`` names something unknown or malformed."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class CrashPoint:
    """When a named point kills: at its ``nth`` hit, or with ``probability`` at each hit (one is set)."""

    name: str
    nth: int | None = None
    probability: float | None = None

    def __str__(self) -> str:
        if self.probability is not None:
            return f"{self.name}@{self.probability:g}"
        return f"{self.name}:{self.nth}"


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _known(names: Mapping[str, str]) -> str:
    return ", ".join(sorted(names))


def _items(value: str, variable: str) -> list[str]:
    if len(value) > _MAX_ENV_CHARS:
        raise TestHooksError(f"{variable}: longer than {_MAX_ENV_CHARS} characters")
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_crash_points(value: str) -> dict[str, CrashPoint]:
    """``ESB_TEST_CRASH_POINTS``'s value as crash points by name; ``TestHooksError`` naming a bad item."""
    points: dict[str, CrashPoint] = {}
    for item in _items(value, CRASH_POINTS_ENV):
        name, nth, probability = item, 1, None
        try:
            if "@" in item:
                name, _, text = item.partition("@")
                probability = float(text)
                if not 0.0 < probability <= 1.0:
                    raise ValueError
            elif ":" in item:
                name, _, text = item.partition(":")
                nth = int(text)
                if nth < 1:
                    raise ValueError
        except ValueError:
            raise TestHooksError(
                f"{CRASH_POINTS_ENV}: {item[:80]!r} is not name, name:N (N >= 1) or name@P (0 < P <= 1)"
            ) from None
        if name not in CRASH_POINTS:
            known = _known(CRASH_POINTS)
            raise TestHooksError(f"{CRASH_POINTS_ENV}: unknown crash point {name[:80]!r}; known: {known}")
        if name in points:
            raise TestHooksError(f"{CRASH_POINTS_ENV}: crash point {name!r} given twice")
        points[name] = CrashPoint(name, None, probability) if probability is not None else CrashPoint(name, nth)
    return points


def parse_safeguards_off(value: str) -> frozenset[str]:
    """``ESB_TEST_SAFEGUARDS_OFF``'s value as safeguard names; ``TestHooksError`` naming an unknown one."""
    names = _items(value, SAFEGUARDS_OFF_ENV)
    for name in names:
        if name not in SAFEGUARDS:
            raise TestHooksError(f"{SAFEGUARDS_OFF_ENV}: unknown safeguard {name[:80]!r}; known: {_known(SAFEGUARDS)}")
    return frozenset(names)


class TestHooks:
    """The test hooks of one process: ``checkpoint(name)`` at each crash point, ``safeguard_off(name)``.

    Built once at start (``from_environ``) and handed to what has hook points. Thread-safe: hits
    are counted per point across threads. ``kill`` and ``rng`` are for this module's own tests.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        crash_points: Mapping[str, CrashPoint] | None = None,
        safeguards_off: frozenset[str] = frozenset(),
        *,
        crash_log: str | None = None,
        kill: Callable[[], None] = _kill_self,
        rng: random.Random | None = None,
    ) -> None:
        points = dict(crash_points or {})
        for name in (*points, *safeguards_off):
            if name not in CRASH_POINTS and name not in SAFEGUARDS:
                raise TestHooksError(f"unknown test hook {name[:80]!r}")
        self._points = points
        self._safeguards_off = safeguards_off
        self._crash_log = crash_log
        self._kill = kill
        self._rng = rng or random.Random()
        self._hits: dict[str, int] = dict.fromkeys(points, 0)
        self._lock = threading.Lock()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TestHooks:
        """The hooks ``environ`` asks for (none when neither variable is set); ``TestHooksError`` if malformed."""
        return cls(
            parse_crash_points(environ.get(CRASH_POINTS_ENV, "")),
            parse_safeguards_off(environ.get(SAFEGUARDS_OFF_ENV, "")),
            crash_log=environ.get(CRASH_LOG_ENV) or None,
        )

    @property
    def active(self) -> bool:
        """Whether any crash point or switched-off safeguard is set."""
        return bool(self._points or self._safeguards_off)

    def describe(self) -> str:
        """The active hooks in one line, e.g. ``crash points: relay.after_confirm:3; safeguards off: none``."""
        points = ", ".join(str(p) for p in self._points.values()) or "none"
        off = ", ".join(sorted(self._safeguards_off)) or "none"
        return f"crash points: {points}; safeguards off: {off}"

    def checkpoint(self, name: str) -> None:
        """A crash point was reached: SIGKILL this process if the hooks say so (never returns then)."""
        point = self._points.get(name)
        if point is None:
            return
        with self._lock:
            self._hits[name] += 1
            hits = self._hits[name]
            if point.probability is not None:
                crash = self._rng.random() < point.probability
            else:
                crash = hits == point.nth
        if crash:
            self._log_crash(name)
            self._kill()

    def hits(self, name: str) -> int:
        """How many times the crash point ``name`` was reached in this process (0 if it is not set)."""
        with self._lock:
            return self._hits.get(name, 0)

    def safeguard_off(self, name: str) -> bool:
        """Whether the safeguard ``name`` (one of ``SAFEGUARDS``) is switched off; ValueError for an unknown name."""
        if name not in SAFEGUARDS:
            raise ValueError(f"unknown safeguard {name[:80]!r}; known: {_known(SAFEGUARDS)}")
        return name in self._safeguards_off

    def _log_crash(self, name: str) -> None:
        if self._crash_log is None:
            return
        line = f"{name} {os.getpid()} {time.time():.6f}\n".encode()
        fd = os.open(self._crash_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


#: the hooks of a process no test instruments
NO_HOOKS: Final = TestHooks()

__all__ = [
    "CRASH_LOG_ENV",
    "CRASH_POINTS",
    "CRASH_POINTS_ENV",
    "NO_HOOKS",
    "SAFEGUARDS",
    "SAFEGUARDS_OFF_ENV",
    "CrashPoint",
    "TestHooks",
    "TestHooksError",
    "parse_crash_points",
    "parse_safeguards_off",
]
