"""Engines and sessions for the CRM database: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///.esb/crm.db"
#: how long a SQLite writer waits for another process's lock before failing
SQLITE_BUSY_TIMEOUT_MS = 15_000
#: seconds after which a pooled PostgreSQL connection is replaced at its next checkout (idle-timeout proxies)
POOL_RECYCLE_SECONDS = 1800


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers and one writer from several processes work at once; the busy timeout makes
    # a second writer wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # FULL, not NORMAL: with NORMAL a commit can roll back after a power loss, while the message
    # that caused it is already acked: "nothing committed is lost" needs the sync.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created and the file tuned for sharing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    # No pre-ping: it is one more round trip on every checkout (three or four per order on the order path,
    # one per relay poll). A connection that died meanwhile (database restarted, backend ended) fails its
    # first statement with a disconnect error instead: SQLAlchemy then discards every pooled connection as
    # old as it, and the caller sees CrmUnavailable (transient) and tries again on a fresh one.
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_SECONDS)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


__all__ = ["DEFAULT_URL", "create_db_engine", "session_factory"]
