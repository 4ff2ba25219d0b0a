"""RabbitMQ's ``x-death`` header, read defensively into the contract's ``DeathRecord``.

The broker adds an entry (a table) each time it dead-letters a message itself: rejected without
requeue, expired, queue full, or past the quorum queue's delivery limit. The header arrives from
outside like the body does (a publisher can set any header), so every value is checked and bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from canonical_model.truncation import truncate
from connectors.base import DeathRecord

X_DEATH = "x-death"
#: entries read (the broker keeps one per queue and reason, most recent first)
MAX_DEATHS = 8
REASON_MAX = 64
QUEUE_MAX = 255
COUNT_MAX = 10**9


def _text(value: Any, limit: int) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return truncate(value, limit) if isinstance(value, str) else ""


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, COUNT_MAX))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # pika decodes an AMQP timestamp as a naive datetime in UTC
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def well_formed(value: Any) -> bool:
    """Whether an ``x-death`` value is what the broker writes: a list of tables, each with a text ``queue``
    and ``reason`` and an integer ``count``.

    RabbitMQ 3.10 reads the header again when it dead-letters a message itself (delivery limit,
    reject without requeue): a publisher's junk ``x-death`` (``[1, "two"]``) crashes its dead-letter
    worker, and a few crashes take down dead-lettering for every quorum queue of the node (seen
    here: ``rabbit_fifo_dlx_sup`` gone, ``noproc``). A copy we publish therefore never carries one.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return False
    for entry in value:
        if not isinstance(entry, Mapping):
            return False
        count = entry.get("count")
        if not (isinstance(entry.get("queue"), str) and isinstance(entry.get("reason"), str)):
            return False
        if isinstance(count, bool) or not isinstance(count, int):
            return False
    return True


def parse_x_death(value: Any) -> tuple[DeathRecord, ...]:
    """The entries of an ``x-death`` header value, most recent first; anything malformed is left out."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return ()
    records: list[DeathRecord] = []
    for entry in value[:MAX_DEATHS]:
        if not isinstance(entry, Mapping):
            continue
        reason = _text(entry.get("reason"), REASON_MAX)
        if not reason:
            continue
        records.append(
            DeathRecord(
                reason=reason,
                queue=_text(entry.get("queue"), QUEUE_MAX),
                count=_count(entry.get("count")),
                time=_time(entry.get("time")),
            )
        )
    return tuple(records)


__all__ = ["MAX_DEATHS", "X_DEATH", "parse_x_death", "well_formed"]
