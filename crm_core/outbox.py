"""The transactional outbox: events are rows written with the change, then relayed to the transport.

Nothing committed is lost: a row is marked published only after the transport confirmed it, so a
crash between the two publishes it again (consumers are idempotent on the message id).

In order: rows are published oldest first (``seq``), one relay at a time however many worker
processes run one (``OutboxRelay``), so one subject's events reach a queue in the order their
transactions committed them. Rows of one subject written by concurrent transactions are ordered
by ``seq``, which is handed out at insert time: that is their commit order only if the writers of
one subject are serialised (e.g. by a lock on the customer's row); two orders placed at once for
one customer may reach the route either way round.

A row whose event type no queue is bound to is *parked* (``parked_at``, ``park_reason``) in the
same transaction that marks the rest of its batch published: it no longer blocks the relay, is
not published again, and waits until an operator binds a route and releases it
(``parked_events``, ``release_parked``; ``esb outbox parked`` / ``esb outbox release``).

Traced: each event published is a producer span (``publish <type>``, a new trace) whose ``traceparent``
is written into the envelope on its way out (not into the row: a batch published again is a new try);
the route's and the ERP call's spans continue that trace.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.envelope import Envelope
from canonical_model.errors import EsbError, Unroutable
from canonical_model.trace_context import traceparent_of, tracer
from canonical_model.truncation import truncate
from crm_core.models import OutboxRow, utcnow
from crm_core.outbox_wakeup import OutboxWakeup, notify_relays

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row on its way to the transport."""

    seq: int
    message_id: str
    event_type: str
    body: bytes
    #: the envelope's subject (the customer key), the message's partition key; None if it has none
    subject: str | None = None


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
    """Write ``envelope`` to the outbox inside the caller's transaction (on PostgreSQL, its commit wakes the
    relays: ``crm_core.outbox_wakeup``)."""
    notify_relays(session)
    session.add(
        OutboxRow(
            message_id=envelope.id,
            event_type=envelope.type,
            subject=envelope.subject,
            body=envelope.model_dump_json(),
        )
    )


#: the PostgreSQL advisory lock (transaction level) a relay holds while it publishes a batch: one
#: relay at a time, whatever the number of worker processes ("esbrelay" in ASCII, a positive bigint)
RELAY_LOCK_KEY = 0x657362_72656C6179

#: the crash points of the relay (``checkpoint(name)``): after the transport confirmed a batch and
#: before its rows are marked; after the marks committed
AFTER_CONFIRM = "relay.after_confirm"
AFTER_MARK = "relay.after_mark"


def _no_checkpoint(name: str) -> None:
    """The default ``checkpoint``: nothing happens at a crash point."""


class ErrorPause:
    """The pause after a failed batch: ``first`` seconds, doubling with each consecutive failure up to
    ``cap``; a success starts over. Also counts the failures of the current streak."""

    def __init__(self, *, first: float = 0.5, cap: float = 5.0) -> None:
        if not 0 < first <= cap:
            raise ValueError("need 0 < first <= cap")
        self.first = first
        self.cap = cap
        #: consecutive failures so far (0 after a success)
        self.failures = 0

    def failed(self) -> float:
        """Record a failure; the seconds to wait before the next try."""
        self.failures += 1
        return float(min(self.cap, self.first * 2 ** min(self.failures - 1, 60)))

    def succeeded(self) -> int:
        """Record a success; how many failures the streak it ends had."""
        failures, self.failures = self.failures, 0
        return failures


class _FileLock:
    """An exclusive, non-blocking ``flock`` on a file: the relays of every process on one SQLite file
    take turns through it (the kernel drops it with a dead process). Not the database's write lock: that
    would hold every CRM writer while a batch is published (up to the publish timeout with a broker down)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no one holds it; opens the file for as long as the lock is held."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _engine_of(sessions: sessionmaker[Session]) -> Engine | None:
    bind = sessions.kw.get("bind")
    return bind if isinstance(bind, Engine) else None


class OutboxRelay:
    """Moves committed outbox rows to the transport, oldest first, one relay at a time.

    Order: each batch is the oldest pending rows, published in ``seq`` order, and marked only after
    the transport confirmed it; several relays (worker processes) on one database take turns (on
    PostgreSQL a transaction-level advisory lock, ``RELAY_LOCK_KEY``; on SQLite an ``flock`` on
    ``<database file>.relay-lock``), so no relay publishes later rows while another still publishes
    earlier ones: the events of one subject reach a queue in the order they were committed.

    Once: a row is published once, unless the process dies (or the transport fails) between the
    confirm and the mark; then its batch is published again and consumers dedupe by message id.

    Wake-up: on PostgreSQL the relay sleeps until a transaction that wrote events commits (LISTEN/NOTIFY,
    ``crm_core.outbox_wakeup``), at most ``run``'s ``listen_interval``; elsewhere it polls.

    Test hooks, passed in: ``checkpoint(name)`` is called at ``AFTER_CONFIRM`` and ``AFTER_MARK``;
    ``mark_before_publish=True`` switches the safeguard off (rows are marked and committed *before*
    they are published: a crash in between loses them), so tests can show they catch that loss.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publish: Publisher,
        *,
        batch_size: int = 500,
        checkpoint: Callable[[str], None] = _no_checkpoint,
        mark_before_publish: bool = False,
    ) -> None:
        self._sessions = sessions
        self._publish = publish
        self._batch_size = batch_size
        self._checkpoint = checkpoint
        self._mark_before_publish = mark_before_publish
        engine = _engine_of(sessions)
        self._dialect = engine.dialect.name if engine is not None else ""
        database = engine.url.database if engine is not None else None
        self._wakeup = OutboxWakeup(engine) if engine is not None else None
        self._file_lock = (
            _FileLock(f"{database}.relay-lock")
            if self._dialect == "sqlite" and database and database != ":memory:"
            else None
        )

    def relay_once(self) -> int:
        """Publish one batch of pending events, oldest first; returns how many were published.

        Events the transport could not route are parked (not counted); the rest of the batch is
        marked published in the same transaction. Any other publishing error propagates with
        nothing marked: the whole batch is published again next time. 0 while another relay holds
        the turn.
        """
        done = self._relay_turn()
        return done[0] if done is not None else 0

    def _relay_turn(self) -> tuple[int, int] | None:
        """One batch if this relay gets the turn: (events published, events parked); None if another has it."""
        if self._file_lock is not None:
            if not self._file_lock.try_acquire():
                return None
            try:
                return self._relay_batch()
            finally:
                self._file_lock.release()
        return self._relay_batch()

    def _take_turn(self, session: Session) -> bool:
        if self._dialect != "postgresql":
            return True
        return bool(session.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY))))

    def _pending_rows(self, session: Session) -> list[PendingEvent]:
        query = select(OutboxRow).where(_pending()).order_by(OutboxRow.seq).limit(self._batch_size)
        return [
            PendingEvent(row.seq, row.message_id, row.event_type, row.body.encode(), row.subject)
            for row in session.scalars(query)
        ]

    def _publish_batch(self, events: Sequence[PendingEvent]) -> set[str]:
        """Publish ``events``; the message ids of those the transport could not route."""
        spans = [
            tracer().start_span(
                f"publish {event.event_type}",
                kind=SpanKind.PRODUCER,
                attributes={"messaging.message.id": event.message_id, "messaging.destination.name": event.event_type},
            )
            for event in events
        ]
        try:
            return self._publish_traced([_traced(event, span) for event, span in zip(events, spans, strict=True)])
        except BaseException as exc:
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, truncate(f"{type(exc).__name__}: {exc}", 300)))
            raise
        finally:
            for span in spans:
                span.end()

    def _publish_traced(self, events: Sequence[PendingEvent]) -> set[str]:
        try:
            self._publish(events)
        except Unroutable as exc:
            unrouted = set(exc.message_ids) & {event.message_id for event in events}
            if not unrouted:  # names none of this batch: not an answer about it; publish it all again
                raise
            return unrouted
        return set()

    def _relay_batch(self) -> tuple[int, int] | None:
        if self._mark_before_publish:
            return self._relay_batch_marked_first()
        with self._sessions() as session, session.begin():
            if not self._take_turn(session):
                return None
            events = self._pending_rows(session)
            if not events:
                return 0, 0
            unrouted = self._publish_batch(events)
            self._checkpoint(AFTER_CONFIRM)
            published, parked = _mark(session, events, unrouted)
        self._checkpoint(AFTER_MARK)
        _log_parked(parked)
        return published, len(parked)

    def _relay_batch_marked_first(self) -> tuple[int, int] | None:
        """The safeguard switched off (tests only): mark and commit, then publish. Loses the batch if
        the process dies before the confirm; the turn is not held while publishing."""
        with self._sessions() as session, session.begin():
            if not self._take_turn(session):
                return None
            events = self._pending_rows(session)
            if not events:
                return 0, 0
            _mark(session, events, set())
        self._checkpoint(AFTER_MARK)
        unrouted = self._publish_batch(events)
        self._checkpoint(AFTER_CONFIRM)
        if not unrouted:
            return len(events), 0
        with self._sessions() as session, session.begin():
            session.execute(
                update(OutboxRow).where(OutboxRow.message_id.in_(sorted(unrouted))).values(published_at=None)
            )
            _, parked = _mark(session, [e for e in events if e.message_id in unrouted], unrouted)
        _log_parked(parked)
        return len(events) - len(parked), len(parked)

    def pending(self) -> int:
        """Rows still to relay (neither published nor parked)."""
        with self._sessions() as session:
            query = select(func.count()).select_from(OutboxRow).where(_pending())
            return int(session.scalar(query) or 0)

    def run(
        self,
        stop: threading.Event,
        *,
        idle_interval: float = 0.05,
        busy_interval: float = 0.2,
        listen_interval: float = 0.5,
        error_pause: ErrorPause | None = None,
        log_every: int = 20,
    ) -> None:
        """Relay until ``stop`` is set.

        Waits ``idle_interval`` seconds when there was less than a full batch, ``busy_interval`` when
        another relay has the turn; on PostgreSQL, while it listens for commits, until the next commit of
        events instead, at most ``listen_interval`` seconds (which also bounds how long ``stop`` may take
        to be seen, and a wake-up lost with a broken listening connection). A failed batch (broker or
        database gone) is tried again after ``error_pause`` (default: 0.5 s doubling to 5 s, reset by a
        success); a failure streak is
        logged at WARNING at its first failure and then at every ``log_every``-th, and its end at INFO.
        """
        pause = error_pause or ErrorPause()
        wakeup = self._wakeup
        try:
            while not stop.is_set():
                # listen before reading the pending rows: a commit after the read then has its notification
                listening = wakeup is not None and wakeup.arm()
                done = self._turn(stop, pause, log_every)
                if done is None or sum(done) < self._batch_size:
                    if listening and wakeup is not None:
                        wakeup.wait(listen_interval)
                    else:
                        stop.wait(busy_interval if done is None else idle_interval)
        finally:
            if wakeup is not None:
                wakeup.close()

    def _turn(self, stop: threading.Event, pause: ErrorPause, log_every: int) -> tuple[int, int] | None:
        """One turn of ``run``: (published, parked), ``None`` if another relay had the turn. After a failure
        it waits out the error pause and answers a full batch (so that ``run`` tries again at once)."""
        try:
            done = self._relay_turn()
        except Exception as exc:
            delay = pause.failed()
            if pause.failures == 1 or pause.failures % log_every == 0:
                log.warning(
                    "outbox relay failed; retrying",
                    failures=pause.failures,
                    retry_in=delay,
                    error=truncate(f"{type(exc).__name__}: {exc}", 300),
                    exc_info=not isinstance(exc, EsbError),  # not one of ours: a bug, show where
                )
            stop.wait(delay)
            return self._batch_size, 0
        failures = pause.succeeded()
        if failures:
            log.info("outbox relay recovered", failures=failures)
        return done


def _traced(event: PendingEvent, span: Span) -> PendingEvent:
    """``event`` with its envelope's ``traceparent`` naming ``span``; unchanged when the span is not recorded
    (no OpenTelemetry SDK) or the body is not a JSON object (the route dead-letters it anyway)."""
    traceparent = traceparent_of(span)
    if traceparent is None:
        return event
    try:
        envelope = json.loads(event.body)
    except ValueError:
        return event
    if not isinstance(envelope, dict):
        return event
    envelope["traceparent"] = traceparent
    return dataclasses.replace(event, body=json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode())


def _mark(session: Session, events: Sequence[PendingEvent], unrouted: set[str]) -> tuple[int, list[PendingEvent]]:
    """Mark ``events`` published, those of ``unrouted`` parked instead; (published, the parked ones)."""
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
            update(OutboxRow).where(OutboxRow.seq.in_(seqs)).values(parked_at=now, park_reason=park_reason(event_type))
        )
    return len(published), parked


def _log_parked(parked: Sequence[PendingEvent]) -> None:
    for event in parked:  # after the commit: a parked row is logged once
        log.warning(
            "outbox event parked: no route is bound to its type",
            message_id=event.message_id,
            event_type=event.event_type[:80],
        )


def backlog(sessions: sessionmaker[Session]) -> tuple[int, datetime | None]:
    """Rows still to relay (neither published nor parked) and the creation time of the oldest (UTC; None: none)."""
    with sessions() as session:
        count, oldest = session.execute(
            select(func.count(), func.min(OutboxRow.created_at)).select_from(OutboxRow).where(_pending())
        ).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite gives the stored UTC back naive
        oldest = oldest.replace(tzinfo=UTC)
    return int(count), oldest


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
    "AFTER_CONFIRM",
    "AFTER_MARK",
    "MAX_PARK_REASON",
    "RELAY_LOCK_KEY",
    "ErrorPause",
    "OutboxRelay",
    "ParkedEvent",
    "PendingEvent",
    "Publisher",
    "add_event",
    "park_reason",
    "parked_events",
    "release_parked",
]
