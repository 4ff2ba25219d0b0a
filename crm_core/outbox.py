"""The transactional outbox: events are rows written with the change, then relayed to the transport.

Nothing committed is lost: a row is marked published only after the transport confirmed it, so a
crash between the two publishes it again (consumers are idempotent on the message id).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.envelope import Envelope
from crm_core.models import OutboxRow, utcnow

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row on its way to the transport."""

    seq: int
    message_id: str
    event_type: str
    body: bytes


#: publishes a batch; returns only when every event is durably taken, raises otherwise
Publisher = Callable[[Sequence[PendingEvent]], None]


def add_event(session: Session, envelope: Envelope) -> None:
    """Write ``envelope`` to the outbox inside the caller's transaction."""
    session.add(
        OutboxRow(
            message_id=envelope.id,
            event_type=envelope.type,
            subject=envelope.subject,
            body=envelope.model_dump_json(),
        )
    )


class OutboxRelay:
    """Moves committed outbox rows to the transport, oldest first."""

    def __init__(self, sessions: sessionmaker[Session], publish: Publisher, *, batch_size: int = 500) -> None:
        self._sessions = sessions
        self._publish = publish
        self._batch_size = batch_size

    def relay_once(self) -> int:
        """Publish one batch of pending events; returns how many were published."""
        with self._sessions() as session, session.begin():
            query = (
                select(OutboxRow)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.seq)
                .limit(self._batch_size)
            )
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # Two relays must not publish the same rows at the same time.
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            if not rows:
                return 0
            events = [PendingEvent(row.seq, row.message_id, row.event_type, row.body.encode()) for row in rows]
            self._publish(events)
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.seq.in_([event.seq for event in events]))
                .values(published_at=utcnow())
            )
        return len(events)

    def pending(self) -> int:
        with self._sessions() as session:
            query = select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
            return int(session.scalar(query) or 0)

    def run(self, stop: threading.Event, *, idle_interval: float = 0.05, error_interval: float = 1.0) -> None:
        """Relay until ``stop`` is set; a failed batch is retried after ``error_interval``."""
        while not stop.is_set():
            try:
                published = self.relay_once()
            except Exception:
                log.exception("outbox relay failed; retrying")
                stop.wait(error_interval)
                continue
            if published < self._batch_size:
                stop.wait(idle_interval)


__all__ = ["OutboxRelay", "PendingEvent", "Publisher", "add_event"]
