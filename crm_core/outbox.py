"""The transactional outbox: events are rows written with the change, then relayed to the transport.

Nothing committed is lost: a row is marked published only after the transport confirmed it, so a
crash between the two publishes it again (consumers are idempotent on the message id).

A row whose event type no queue is bound to is *parked* (``parked_at``, ``park_reason``) in the
same transaction that marks the rest of its batch published: it no longer blocks the relay, is
not published again, and waits until an operator binds a route and releases it
(``parked_events``, ``release_parked``; ``esb outbox parked`` / ``esb outbox release``).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.envelope import Envelope
from canonical_model.errors import Unroutable
from crm_core.models import OutboxRow, utcnow

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row on its way to the transport."""

    seq: int
    message_id: str
    event_type: str
    body: bytes


@dataclass(frozen=True)
class ParkedEvent:
    """An outbox row kept aside because no route was bound to its event type."""

    seq: int
    message_id: str
    event_type: str
    parked_at: datetime
    reason: str


#: publishes a batch; returns only when every event is durably taken. Raises ``Unroutable`` naming
#: the events no queue is bound to once all the others are taken, anything else when it failed.
Publisher = Callable[[Sequence[PendingEvent]], None]

#: the longest park reason stored (characters); a longer one is cut and marked
MAX_PARK_REASON = 300
_CUT = "...[truncated]"


def park_reason(event_type: str) -> str:
    """Why an event of ``event_type`` was parked, at most ``MAX_PARK_REASON`` characters."""
    reason = f"no queue is bound to event type {event_type}"
    return reason if len(reason) <= MAX_PARK_REASON else reason[: MAX_PARK_REASON - len(_CUT)] + _CUT


def _pending() -> ColumnElement[bool]:
    return OutboxRow.published_at.is_(None) & OutboxRow.parked_at.is_(None)


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
        """Publish one batch of pending events, oldest first; returns how many were published.

        Events the transport could not route are parked (not counted); the rest of the batch is
        marked published in the same transaction. Any other publishing error propagates with
        nothing marked: the whole batch is published again next time.
        """
        return self._relay_batch()[0]

    def _relay_batch(self) -> tuple[int, int]:
        """One batch: (events published, events parked)."""
        with self._sessions() as session, session.begin():
            query = select(OutboxRow).where(_pending()).order_by(OutboxRow.seq).limit(self._batch_size)
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # Two relays must not publish the same rows at the same time.
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            if not rows:
                return 0, 0
            events = [PendingEvent(row.seq, row.message_id, row.event_type, row.body.encode()) for row in rows]
            try:
                self._publish(events)
                unrouted: set[str] = set()
            except Unroutable as exc:
                unrouted = set(exc.message_ids) & {event.message_id for event in events}
                if not unrouted:  # names none of this batch: not an answer about it; publish it all again
                    raise
            published = [event.seq for event in events if event.message_id not in unrouted]
            parked = [event for event in events if event.message_id in unrouted]
            now = utcnow()
            if published:
                session.execute(update(OutboxRow).where(OutboxRow.seq.in_(published)).values(published_at=now))
            by_type: defaultdict[str, list[int]] = defaultdict(list)
            for event in parked:
                by_type[event.event_type].append(event.seq)
            for event_type, seqs in by_type.items():
                session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.seq.in_(seqs))
                    .values(parked_at=now, park_reason=park_reason(event_type))
                )
        for event in parked:  # after the commit: a parked row is logged once
            log.warning(
                "outbox event parked: no route is bound to its type",
                message_id=event.message_id,
                event_type=event.event_type[:80],
            )
        return len(published), len(parked)

    def pending(self) -> int:
        """Rows still to relay (neither published nor parked)."""
        with self._sessions() as session:
            query = select(func.count()).select_from(OutboxRow).where(_pending())
            return int(session.scalar(query) or 0)

    def run(self, stop: threading.Event, *, idle_interval: float = 0.05, error_interval: float = 1.0) -> None:
        """Relay until ``stop`` is set; a failed batch is retried after ``error_interval``."""
        while not stop.is_set():
            try:
                published, parked = self._relay_batch()
            except Exception:
                log.exception("outbox relay failed; retrying")
                stop.wait(error_interval)
                continue
            if published + parked < self._batch_size:
                stop.wait(idle_interval)


def parked_events(sessions: sessionmaker[Session], *, limit: int = 1000) -> list[ParkedEvent]:
    """Parked outbox rows, oldest first, at most ``limit`` of them."""
    query = select(OutboxRow).where(OutboxRow.parked_at.is_not(None)).order_by(OutboxRow.seq).limit(limit)
    with sessions() as session:
        return [
            ParkedEvent(row.seq, row.message_id, row.event_type, row.parked_at, row.park_reason or "")
            for row in session.scalars(query)
            if row.parked_at is not None
        ]


def release_parked(sessions: sessionmaker[Session], message_ids: Sequence[str] | None = None) -> int:
    """Make parked rows pending again: those of ``message_ids``, or every one with ``None``.

    Returns how many were released (ids that are not parked are left alone). The relay publishes
    them with its next batch, in their original order; if still no route is bound, they are parked
    again. A released event may reach its route after later events of the same subject.
    """
    statement = update(OutboxRow).where(OutboxRow.parked_at.is_not(None))
    if message_ids is not None:
        statement = statement.where(OutboxRow.message_id.in_(list(message_ids)))
    with sessions() as session, session.begin():
        released = session.scalars(statement.values(parked_at=None, park_reason=None).returning(OutboxRow.seq))
        return len(released.all())


__all__ = [
    "MAX_PARK_REASON",
    "OutboxRelay",
    "ParkedEvent",
    "PendingEvent",
    "Publisher",
    "add_event",
    "park_reason",
    "parked_events",
    "release_parked",
]
