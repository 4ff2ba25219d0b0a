"""The attempt journal: how often a redelivered message was *handed to its handler* without being settled.

A broker counts a delivery for every message a consumer's connection had taken when it died,
whether or not a handler ever started on it: six quick crashes of a worker with 50 messages
prefetched made RabbitMQ's quorum queue dead-letter 35 of 60 orders that were never tried. So a
queue's own delivery limit is only a backstop (``QueueSpec.delivery_limit``), and the consumer
counts here, durably, the tries that started on a *redelivered* message (a first delivery costs
nothing: if it kills the consumer, its next delivery is a redelivery). A message whose tries
killed the consumer ``crash_limit`` times is dead-lettered by the consumer with that reason; one
that was only ever prefetched is never counted.

One row per (queue, message id) in ``esb_delivery_attempts`` (its own metadata, so it can live
in any database the worker already uses), deleted when the message is settled.
"""

from __future__ import annotations

import time

from sqlalchemy import Column, Double, Engine, Integer, MetaData, String, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from canonical_model.errors import TransportError

metadata = MetaData()

attempts = Table(
    "esb_delivery_attempts",
    metadata,
    Column("queue", String(255), primary_key=True),
    Column("message_id", String(255), primary_key=True),
    Column("started", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),  # epoch seconds
)

#: characters of a queue name or message id kept as a key (longer ones are cut: still one message)
KEY_MAX = 255


class AttemptJournal:
    """Started tries of redelivered messages, in ``engine``'s database (SQLite or PostgreSQL).

    Errors of the database are ``TransportError`` (transient), system ``journal``.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._ready = False

    def _create(self) -> None:
        if not self._ready:
            try:
                metadata.create_all(self._engine)
            except SQLAlchemyError:  # another process created it at the same moment
                metadata.create_all(self._engine)
            self._ready = True

    def start(self, queue: str, message_id: str) -> int:
        """Count one more started try of the message; returns the tries started so far, this one included."""
        key = (queue[:KEY_MAX], message_id[:KEY_MAX])
        try:
            self._create()
            with self._engine.begin() as conn:
                dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
                insert = dialect.insert(attempts).values(
                    queue=key[0], message_id=key[1], started=1, updated_at=time.time()
                )
                upsert = insert.on_conflict_do_update(
                    index_elements=["queue", "message_id"],
                    set_={"started": attempts.c.started + 1, "updated_at": insert.excluded.updated_at},
                )
                conn.execute(upsert)
                where = (attempts.c.queue == key[0]) & (attempts.c.message_id == key[1])
                return int(conn.scalar(select(attempts.c.started).where(where)) or 1)
        except SQLAlchemyError as exc:
            raise TransportError(f"attempt journal: {type(exc).__name__}", system="journal", operation="start") from exc

    def forget(self, queue: str, message_id: str) -> None:
        """The message is settled: drop its row (none is fine)."""
        where = (attempts.c.queue == queue[:KEY_MAX]) & (attempts.c.message_id == message_id[:KEY_MAX])
        try:
            self._create()
            with self._engine.begin() as conn:
                conn.execute(delete(attempts).where(where))
        except SQLAlchemyError as exc:
            raise TransportError(
                f"attempt journal: {type(exc).__name__}", system="journal", operation="forget"
            ) from exc

    def started(self, queue: str, message_id: str) -> int:
        """Tries started so far (0 when none is recorded)."""
        where = (attempts.c.queue == queue[:KEY_MAX]) & (attempts.c.message_id == message_id[:KEY_MAX])
        self._create()
        with self._engine.connect() as conn:
            return int(conn.scalar(select(attempts.c.started).where(where)) or 0)

    def prune(self, older_than: float) -> int:
        """Drop rows not touched for ``older_than`` seconds (a message settled by a process that died right
        after, or dead-lettered by the broker itself); returns how many."""
        statement = delete(attempts).where(attempts.c.updated_at < time.time() - older_than)
        self._create()
        with self._engine.begin() as conn:
            return int(conn.execute(statement).rowcount)


__all__ = ["AttemptJournal", "attempts", "metadata"]
