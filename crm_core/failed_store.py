"""The failed-message store: every dead letter kept in the CRM database for the operator.

A failure is keyed by (message id, queue). ``record_failure`` inserts it, or, for a message dead-lettered
again from the same queue, counts one more attempt and moves its last failure time (and sets it back to
``failed`` if an operator had replayed it). A redelivery of the *same* dead letter (its consumer died
between the commit and the ack) carries the same mark and changes nothing, so the store counts each
dead-lettering once. Failures are grouped by cause (``cause_of``: exception type, normalised reason,
route). Operator actions (replay, edit, discard, acknowledge) are kept in ``failed_message_actions``.

Every text written here is bounded (``truncate``), whatever the caller passes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.truncation import truncate
from crm_core.errors import NotFound
from crm_core.models import FailedMessage, FailedMessageAction, utcnow

#: bounds of what is stored (characters, bytes for the body)
REASON_MAX = 1000
STACK_MAX = 4000
BODY_MAX = 256 * 1024
HEADERS_MAX = 32
HEADER_VALUE_MAX = 500
NAME_MAX = 120
ACTOR_MAX = 80
DETAIL_MAX = 500
TITLE_MAX = 400


class FailureStatus(StrEnum):
    FAILED = "failed"
    REPLAYED = "replayed"
    ACKNOWLEDGED = "acknowledged"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class NewFailure:
    """One dead-lettering as the store's subscriber read it. ``mark``: what tells this dead-lettering from
    another of the same message in the same queue (a redelivery of the same dead letter has the same)."""

    message_id: str
    queue: str
    route: str
    event_type: str
    reason: str
    exception_type: str
    stack: str | None
    by_broker: bool
    mark: str
    failed_at: datetime
    headers: Mapping[str, object]
    body: bytes
    customer_id: str | None
    order_id: str | None


@dataclass(frozen=True)
class Failure:
    """A stored failure (its body as stored: at most ``BODY_MAX`` bytes)."""

    id: int
    message_id: str
    queue: str
    route: str
    event_type: str
    reason: str
    exception_type: str
    stack: str | None
    group_key: str
    group_title: str
    by_broker: bool
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    headers: dict[str, object]
    body: bytes
    body_truncated: bool
    customer_id: str | None
    order_id: str | None
    status: FailureStatus
    status_changed_at: datetime


@dataclass(frozen=True)
class FailureGroup:
    """Failures of one cause: how many (of the statuses asked for), first and last failure time."""

    key: str
    title: str
    route: str
    exception_type: str
    count: int
    first_failed_at: datetime
    last_failed_at: datetime


@dataclass(frozen=True)
class Action:
    """One operator action on a failure: ``action`` replay / edit / discard / acknowledge; ``result`` ok,
    refused or error; ``detail`` says what happened (bounded)."""

    failed_id: int
    action: str
    actor: str
    at: datetime
    result: str
    detail: str


_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
#: a token of 6+ characters with a digit in it: an id (``SO-DEEC43C93F``, a timestamp), not a cause
_ID_TOKEN = re.compile(r"\b(?=[\w.:-]*\d)[\w.:-]{5,}\w")
#: a number with 4+ digits or decimals (an amount, a count): short integers (HTTP 401, 4 tries) are kept
_NUMBER = re.compile(r"\b\d+[.,]\d+\b|\b\d{4,}\b")
_WHERE = re.compile(r"\s*\[(?:in |x-death: )[^\]]*\]")


def normalise_reason(reason: str) -> str:
    """``reason`` without what differs between messages of one cause: where it died (``[in queue]``,
    ``[x-death: ...]``), ids, quoted values and long numbers (``<id>``, ``<value>``, ``<n>``); short
    integers stay (``HTTP 401`` is a cause); at most 300 characters."""
    text = _WHERE.sub("", reason[:REASON_MAX])
    text = _UUID.sub("<id>", text)
    text = _QUOTED.sub("<value>", text)
    text = _NUMBER.sub("<n>", text)
    text = _ID_TOKEN.sub("<id>", text)
    return truncate(" ".join(text.split()), 300)


def cause_of(exception_type: str, reason: str, route: str) -> tuple[str, str]:
    """The group of a failure: (key, title). The key is 12 hex digits of a SHA-256 over exception type,
    normalised reason and route, so the same cause has the same key in every database."""
    normalised = normalise_reason(reason)
    digest = hashlib.sha256(f"{exception_type}\n{normalised}\n{route}".encode()).hexdigest()[:12]
    return digest, truncate(f"{route or '?'}: {exception_type}: {normalised}", TITLE_MAX)


def bounded_headers(headers: Mapping[str, object]) -> dict[str, object]:
    """At most ``HEADERS_MAX`` headers, names and text values cut to ``HEADER_VALUE_MAX`` characters;
    values other than text, integers and booleans are kept as their bounded text."""
    kept: dict[str, object] = {}
    for name, value in list(headers.items())[:HEADERS_MAX]:
        key = truncate(str(name), NAME_MAX)
        if isinstance(value, (bool, int)):
            kept[key] = value
        else:
            kept[key] = truncate(value if isinstance(value, str) else str(value), HEADER_VALUE_MAX)
    return kept


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes: they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _failure(row: FailedMessage) -> Failure:
    return Failure(
        id=row.id,
        message_id=row.message_id,
        queue=row.queue,
        route=row.route,
        event_type=row.event_type,
        reason=row.reason,
        exception_type=row.exception_type,
        stack=row.stack,
        group_key=row.group_key,
        group_title=row.group_title,
        by_broker=row.by_broker,
        attempts=row.attempts,
        first_failed_at=_utc(row.first_failed_at),
        last_failed_at=_utc(row.last_failed_at),
        headers=dict(row.headers),
        body=bytes(row.body),
        body_truncated=row.body_truncated,
        customer_id=row.customer_id,
        order_id=row.order_id,
        status=FailureStatus(row.status),
        status_changed_at=_utc(row.status_changed_at),
    )


def record_failure(sessions: sessionmaker[Session], new: NewFailure) -> tuple[int, bool]:
    """Store one dead-lettering, committed when this returns: (the failure's id, whether it changed anything).

    A new (message id, queue) is inserted as ``failed`` with 1 attempt; a known one with another ``mark``
    gets one more attempt, the new reason, last failure time and status ``failed``; with the same mark
    (a redelivered dead letter) nothing changes. Raises SQLAlchemy's errors (the caller retries).
    """
    message_id = truncate(new.message_id, 64)
    queue = truncate(new.queue, 255)
    reason = truncate(new.reason, REASON_MAX)
    exception_type = truncate(new.exception_type, NAME_MAX)
    route = truncate(new.route, 80)
    key, title = cause_of(exception_type, reason, route)
    body = new.body[:BODY_MAX]
    for _ in range(2):  # a concurrent insert of the same key: read it again and update it
        with sessions() as session:
            row = session.scalar(
                select(FailedMessage).where(FailedMessage.message_id == message_id, FailedMessage.queue == queue)
            )
            if row is not None:
                if row.last_mark == new.mark:
                    return row.id, False
                row.attempts += 1
                row.last_mark = truncate(new.mark, 80)
                row.reason = reason
                row.exception_type = exception_type
                row.stack = truncate(new.stack, STACK_MAX) if new.stack else None
                row.group_key, row.group_title = key, title
                row.by_broker = new.by_broker
                row.last_failed_at = new.failed_at
                row.headers = bounded_headers(new.headers)
                row.body, row.body_truncated = body, len(new.body) > BODY_MAX
                row.status = FailureStatus.FAILED
                row.status_changed_at = utcnow()
                session.commit()
                return row.id, True
            row = FailedMessage(
                message_id=message_id,
                queue=queue,
                route=route,
                event_type=truncate(new.event_type, 128),
                reason=reason,
                exception_type=exception_type,
                stack=truncate(new.stack, STACK_MAX) if new.stack else None,
                group_key=key,
                group_title=title,
                by_broker=new.by_broker,
                attempts=1,
                last_mark=truncate(new.mark, 80),
                first_failed_at=new.failed_at,
                last_failed_at=new.failed_at,
                headers=bounded_headers(new.headers),
                body=body,
                body_truncated=len(new.body) > BODY_MAX,
                customer_id=truncate(new.customer_id, 40) if new.customer_id else None,
                order_id=truncate(new.order_id, 40) if new.order_id else None,
                status=FailureStatus.FAILED,
                status_changed_at=utcnow(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            return row.id, True
    raise RuntimeError(f"failure of {message_id!r} in {queue!r} could not be stored")  # pragma: no cover


@dataclass(frozen=True)
class FailureFilter:
    """Which failures: all of the given conditions (None: any). ``statuses`` defaults to ``failed`` only."""

    route: str | None = None
    group: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    since: datetime | None = None
    statuses: tuple[FailureStatus, ...] = (FailureStatus.FAILED,)

    def where(self) -> list[object]:
        conditions: list[object] = []
        if self.route is not None:
            conditions.append(FailedMessage.route == self.route)
        if self.group is not None:
            conditions.append(FailedMessage.group_key == self.group)
        if self.customer_id is not None:
            conditions.append(FailedMessage.customer_id == self.customer_id)
        if self.order_id is not None:
            conditions.append(FailedMessage.order_id == self.order_id)
        if self.since is not None:
            conditions.append(FailedMessage.last_failed_at >= self.since)
        if self.statuses:
            conditions.append(FailedMessage.status.in_([s.value for s in self.statuses]))
        return conditions


def list_failures(sessions: sessionmaker[Session], where: FailureFilter, *, limit: int = 100) -> list[Failure]:
    """Failures matching ``where``, the most recent failure first, at most ``limit``."""
    with sessions() as session:
        rows = session.scalars(
            select(FailedMessage)
            .where(*where.where())  # type: ignore[arg-type]
            .order_by(FailedMessage.last_failed_at.desc(), FailedMessage.id.desc())
            .limit(limit)
        ).all()
        return [_failure(row) for row in rows]


def list_groups(sessions: sessionmaker[Session], where: FailureFilter) -> list[FailureGroup]:
    """Failures matching ``where`` grouped by cause, the largest group first."""
    count = func.count(FailedMessage.id)
    with sessions() as session:
        rows = session.execute(
            select(
                FailedMessage.group_key,
                func.max(FailedMessage.group_title),
                func.max(FailedMessage.route),
                func.max(FailedMessage.exception_type),
                count,
                func.min(FailedMessage.first_failed_at),
                func.max(FailedMessage.last_failed_at),
            )
            .where(*where.where())  # type: ignore[arg-type]
            .group_by(FailedMessage.group_key)
            .order_by(count.desc(), FailedMessage.group_key)
        ).all()
    return [
        FailureGroup(
            key=key,
            title=title,
            route=route,
            exception_type=kind,
            count=n,
            first_failed_at=_utc(first),
            last_failed_at=_utc(last),
        )
        for key, title, route, kind, n, first, last in rows
    ]


def get_failure(sessions: sessionmaker[Session], failure_id: int) -> Failure:
    """The stored failure ``failure_id``; raises ``NotFound``."""
    with sessions() as session:
        row = session.get(FailedMessage, failure_id)
        if row is None:
            raise NotFound("failed message", str(failure_id))
        return _failure(row)


def actions_of(sessions: sessionmaker[Session], failure_id: int) -> list[Action]:
    """What operators did to failure ``failure_id``, oldest first."""
    with sessions() as session:
        rows = session.scalars(
            select(FailedMessageAction)
            .where(FailedMessageAction.failed_id == failure_id)
            .order_by(FailedMessageAction.id)
        ).all()
        return [Action(r.failed_id, r.action, r.actor, _utc(r.at), r.result, r.detail) for r in rows]


def record_action(
    sessions: sessionmaker[Session],
    failure_ids: Iterable[int],
    *,
    action: str,
    actor: str,
    result: str,
    detail: str,
    status: FailureStatus | None = None,
    body: bytes | None = None,
) -> None:
    """Record ``action`` on each of ``failure_ids`` in one transaction; with ``status`` also set their
    status, with ``body`` also replace the stored body (an edit that was replayed)."""
    ids = list(failure_ids)
    if not ids:
        return
    now = utcnow()
    with sessions() as session:
        for failure_id in ids:
            session.add(
                FailedMessageAction(
                    failed_id=failure_id,
                    action=truncate(action, 16),
                    actor=truncate(actor, ACTOR_MAX),
                    at=now,
                    result=truncate(result, 16),
                    detail=truncate(detail, DETAIL_MAX),
                )
            )
            if status is not None or body is not None:
                row = session.get(FailedMessage, failure_id)
                if row is None:
                    raise NotFound("failed message", str(failure_id))
                if status is not None:
                    row.status, row.status_changed_at = status.value, now
                if body is not None:
                    row.body, row.body_truncated = body[:BODY_MAX], len(body) > BODY_MAX
        session.commit()


def count_failures(sessions: sessionmaker[Session], where: FailureFilter) -> int:
    with sessions() as session:
        return int(
            session.scalar(select(func.count(FailedMessage.id)).where(*where.where())) or 0  # type: ignore[arg-type]
        )


def failure_times(
    sessions: sessionmaker[Session], where: FailureFilter, *, limit: int = 100_000
) -> list[tuple[str, datetime]]:
    """(group key, last failure time in UTC) of the failures matching ``where``, at most ``limit``, the most
    recent first: what the console's sparklines count."""
    with sessions() as session:
        rows = session.execute(
            select(FailedMessage.group_key, FailedMessage.last_failed_at)
            .where(*where.where())  # type: ignore[arg-type]
            .order_by(FailedMessage.last_failed_at.desc())
            .limit(limit)
        ).all()
    return [(key, _utc(moment)) for key, moment in rows]


__all__ = [
    "BODY_MAX",
    "Action",
    "Failure",
    "FailureFilter",
    "FailureGroup",
    "FailureStatus",
    "NewFailure",
    "actions_of",
    "bounded_headers",
    "cause_of",
    "count_failures",
    "failure_times",
    "get_failure",
    "list_failures",
    "list_groups",
    "normalise_reason",
    "record_action",
    "record_failure",
]
