"""Wake the outbox relay when events are committed, instead of polling for them (PostgreSQL LISTEN/NOTIFY).

A transaction that writes outbox rows also sends ``NOTIFY esb_outbox`` (``notify_relays``); PostgreSQL
delivers it to every listening connection when, and only if, the transaction commits. Each relay listens
on a connection of its own (``OutboxWakeup``) and sleeps until a notification or its fallback interval.

No wake-up is lost: the relay listens *before* it reads the pending rows, so a row committed after that
read has its notification waiting on the connection. A notification can still go missing in ways this
module cannot see (the listening connection broke and was opened again, a writer that does not notify),
which the fallback interval bounds. On SQLite (or while PostgreSQL cannot be reached) ``listening`` is
False and the relay polls at its idle interval, as before.

Measured idle (one worker, RabbitMQ + PostgreSQL, 2-core machine): the relay's 20 polls a second were
44 of the worker's 55 ms of CPU per second.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from canonical_model.truncation import truncate

log = structlog.get_logger(__name__)

#: the notification channel of the outbox (one CRM database per deployment, like the relay's lock key)
CHANNEL = "esb_outbox"
#: seconds between tries to listen again after a failure (the relay polls meanwhile)
RETRY_SECONDS = 1.0


def notify_relays(session: Session) -> None:
    """In the caller's transaction: wake the listening relays once it commits (PostgreSQL; nothing elsewhere).

    PostgreSQL folds the notifications of one transaction into one, so calling this per event costs one
    round trip each but wakes the relays once.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


class OutboxWakeup:
    """A connection of its own (out of ``engine``'s pool, autocommit) listening on ``CHANNEL``.

    ``arm()`` before reading the pending rows; then ``wait(timeout)`` returns at the first notification
    (at once if some arrived meanwhile) or after ``timeout`` seconds. Errors never escape: the connection
    is dropped, ``listening`` turns False, and the next ``arm()`` opens a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Any = None
        #: whether the last ``arm()`` left a listening connection
        self.listening = False
        self._failures = 0
        #: monotonic time before which ``arm`` does not try again after a failure
        self._retry_at = 0.0

    @property
    def supported(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def arm(self) -> bool:
        """Listen if not yet listening; whether the relay may now wait for notifications."""
        if self.listening or not self.supported or time.monotonic() < self._retry_at:
            return self.listening
        try:
            raw = self._engine.raw_connection()
            connection = raw.driver_connection
            raw.detach()  # kept out of the pool: it stays in LISTEN for the relay's life
            if connection is None:
                raise RuntimeError("the pool gave no driver connection")
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:  # the database is away: the relay polls until it is back
            self._failed("outbox wake-up not listening; polling", exc)
            return False
        self._connection = connection
        self.listening = True
        if self._failures:
            log.info("outbox wake-up listening again", failures=self._failures)
            self._failures = 0
        return True

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrived (True; all pending ones are taken) or ``timeout`` seconds
        passed (False). Not listening: returns False at once."""
        if not self.listening:
            return False
        try:
            received = any(True for _ in self._connection.notifies(timeout=timeout, stop_after=1))
            if received:  # the others that queued up meanwhile wake nothing more
                for _ in self._connection.notifies(timeout=0):
                    pass
            return received
        except Exception as exc:
            self._failed("outbox wake-up connection lost; polling", exc)
            return False

    def _failed(self, message: str, exc: Exception) -> None:
        self._failures += 1
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if self._failures == 1 or self._failures % 20 == 0:
            log.warning(message, failures=self._failures, error=truncate(f"{type(exc).__name__}: {exc}", 300))
        self.close()

    def close(self) -> None:
        """Stop listening (closes the connection)."""
        self.listening = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken
                log.debug("outbox wake-up connection not closed cleanly")


__all__ = ["CHANNEL", "OutboxWakeup", "notify_relays"]
