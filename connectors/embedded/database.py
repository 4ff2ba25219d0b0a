"""The embedded transport's engine (SQLite tuned for several processes, or PostgreSQL) and in-process wake-ups."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

#: execution option: this transaction only reads (SQLite may then share the file instead of taking the write lock)
READ_ONLY = "esb_read_only"


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_transport_engine(url: str, *, busy_timeout: float = 30.0) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if backend != "sqlite":
        raise ValueError(f"the embedded transport runs on SQLite or PostgreSQL, not {backend!r}")
    if is_memory(parsed):
        # one connection shared by the threads (the transport serialises its transactions): one database
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, pool_size=10, max_overflow=20, connect_args={"timeout": busy_timeout})
    _tune_sqlite(engine, busy_timeout)
    return engine


def _tune_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL: readers and the one writer do not block each other across processes; FULL: a commit
        # is on disk when it returns. The driver's own BEGIN is turned off: see on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY, no waiting)
        # when another process wrote in between; IMMEDIATE takes the write lock first, waiting up to
        # the busy timeout, which also makes the claim (a read and an update) atomic.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


class Wakeup:
    """Tells consumers in this process that something was published or requeued."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Wait up to ``timeout`` unless something happened since ``generation`` was ``seen``."""
        with self._condition:
            if self.generation == seen:
                self._condition.wait(timeout)


_wakeups: dict[str, Wakeup] = {}
_wakeups_lock = threading.Lock()


def wakeup_for(key: str) -> Wakeup:
    """The process-wide wake-up of one database, so that separate transports on it wake each other."""
    with _wakeups_lock:
        return _wakeups.setdefault(key, Wakeup())


_write_locks: dict[str, threading.RLock] = {}


def write_lock_for(key: str) -> threading.RLock:
    """The process-wide lock of one SQLite file's write transactions (every transport of this process on it)."""
    with _wakeups_lock:
        return _write_locks.setdefault(key, threading.RLock())


def database_key(url: URL) -> str:
    if url.get_backend_name() == "sqlite" and not is_memory(url):
        return f"sqlite:{Path(url.database or '').resolve()}"
    return url.render_as_string(hide_password=False)


__all__ = [
    "READ_ONLY",
    "Wakeup",
    "create_transport_engine",
    "database_key",
    "is_memory",
    "wakeup_for",
    "write_lock_for",
]
