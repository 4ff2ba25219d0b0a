"""Every SQL statement of the embedded transport; each public method is one transaction."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from canonical_model.errors import TransportError
from connectors.base import (
    DELIVERY_LIMIT_EXCEEDED,
    HeaderValue,
    OutgoingMessage,
    Topology,
    dead_letter_headers,
    fit_headers,
    unroutable,
)
from connectors.embedded.database import READ_ONLY
from connectors.embedded.routing import route
from connectors.embedded.schema import bindings, exchanges, messages, metadata, queues

SYSTEM = "embedded"


def transport_error(message: str, operation: str) -> TransportError:
    return TransportError(message, system=SYSTEM, operation=operation)


def json_size(key: str, value: object) -> int:
    """Bytes one header entry takes in the ``headers`` JSON column."""
    return len(json.dumps({key: value}, ensure_ascii=False).encode()) - 2


def plain_headers(headers: object) -> dict[str, HeaderValue]:
    """A stored headers value as the contract's ``str | int`` mapping: anything else a row (or a careless
    publisher) holds is text, and a value that is no mapping is no headers at all (never an error in claim)."""
    if not isinstance(headers, dict):
        return {}
    plain: dict[str, HeaderValue] = {}
    for key, value in headers.items():
        if isinstance(value, bool):
            plain[str(key)] = int(value)
        elif isinstance(value, str | int):
            plain[str(key)] = value
        elif value is not None:
            try:
                text = json.dumps(value, ensure_ascii=False, default=str)
            except (ValueError, TypeError, RecursionError):
                text = "…[unreadable header value]"
            plain[str(key)] = text
    return plain


class LeaseLost(TransportError):
    """The message's lease ran out and it was (or will be) delivered again: this settle has no effect."""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    delivery_limit: int | None
    dead_letter_exchange: str | None


@dataclass(frozen=True)
class Claimed:
    """A message row as claimed by one consumer."""

    id: int
    queue: str
    routing_key: str
    message_id: str | None
    content_type: str
    headers: dict[str, HeaderValue]
    body: bytes
    deliveries: int  # including this one
    lease_token: str


class Store:
    def __init__(self, engine: Engine, *, serialize: bool) -> None:
        self._engine = engine
        # an in-memory database is one shared connection: its transactions must not interleave
        self._serial: AbstractContextManager[Any] = threading.RLock() if serialize else nullcontext()

    @contextmanager
    def _transaction(self, operation: str, *, read_only: bool = False) -> Iterator[Connection]:
        try:
            with self._serial, self._engine.connect() as connection:
                if read_only:
                    connection.execution_options(**{READ_ONLY: True})
                with connection.begin():
                    yield connection
        except SQLAlchemyError as exc:
            raise transport_error(f"{type(exc).__name__}: {exc}", operation) from exc

    # -- topology

    def create_tables(self) -> None:
        try:
            metadata.create_all(self._engine)
        except SQLAlchemyError:
            # another process created them at the same moment (PostgreSQL); now they exist
            try:
                metadata.create_all(self._engine)
            except SQLAlchemyError as exc:
                raise transport_error(f"cannot create tables: {exc}", "declare") from exc

    def declare(self, topology: Topology) -> None:
        with self._transaction("declare") as conn:
            self._upsert(conn, exchanges, [{"name": topology.exchange, "kind": "topic"}], ["name"])
            self._upsert(conn, exchanges, [{"name": topology.dead_letter_exchange, "kind": "fanout"}], ["name"])
            final = topology.final_dead_letter_exchange
            self._upsert(conn, exchanges, [{"name": final, "kind": "fanout"}], ["name"])
            rows = [
                {
                    "name": spec.name,
                    "delivery_limit": spec.delivery_limit,
                    "dead_letter_exchange": topology.dead_letter_exchange,
                }
                for spec in topology.queues
            ]
            # a dead-letter subscriber's own dead letters go to the dead letter queue only, never back to it
            rows += [
                {"name": spec.name, "delivery_limit": spec.delivery_limit, "dead_letter_exchange": final}
                for spec in topology.dead_letter_subscribers
            ]
            rows.append({"name": topology.dead_letter_queue, "delivery_limit": None, "dead_letter_exchange": None})
            self._upsert(conn, queues, rows, ["name"])
            links = [
                {"exchange": topology.exchange, "queue": spec.name, "pattern": pattern}
                for spec in topology.queues
                for pattern in spec.bindings
            ]
            links.append(
                {"exchange": topology.dead_letter_exchange, "queue": topology.dead_letter_queue, "pattern": ""}
            )
            links += [
                {"exchange": topology.dead_letter_exchange, "queue": spec.name, "pattern": ""}
                for spec in topology.dead_letter_subscribers
            ]
            links.append({"exchange": final, "queue": topology.dead_letter_queue, "pattern": ""})
            self._upsert(conn, bindings, links, ["exchange", "queue", "pattern"])

    def delete(self, topology: Topology) -> None:
        specs = (*topology.queues, *topology.dead_letter_subscribers)
        names = [spec.name for spec in specs] + [topology.dead_letter_queue]
        exchange_names = [topology.exchange, topology.dead_letter_exchange, topology.final_dead_letter_exchange]
        with self._transaction("delete") as conn:
            conn.execute(delete(messages).where(messages.c.queue.in_(names)))
            conn.execute(
                delete(bindings).where(or_(bindings.c.queue.in_(names), bindings.c.exchange.in_(exchange_names)))
            )
            conn.execute(delete(queues).where(queues.c.name.in_(names)))
            conn.execute(delete(exchanges).where(exchanges.c.name.in_(exchange_names)))

    @staticmethod
    def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
        if not rows:
            return
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).values(rows)
        others = [column for column in rows[0] if column not in keys]
        if others:
            statement = statement.on_conflict_do_update(
                index_elements=keys, set_={column: statement.excluded[column] for column in others}
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=keys)
        conn.execute(statement)

    def queue_info(self, queue: str, operation: str) -> QueueInfo:
        with self._transaction(operation, read_only=True) as conn:
            return self._queue_info(conn, queue, operation)

    @staticmethod
    def _queue_info(conn: Connection, queue: str, operation: str) -> QueueInfo:
        row = conn.execute(select(queues).where(queues.c.name == queue)).first()
        if row is None:
            raise transport_error(f"queue {queue!r} is not declared", operation)
        return QueueInfo(row.name, row.delivery_limit, row.dead_letter_exchange)

    # -- publish

    def publish(self, exchange: str, batch: Sequence[OutgoingMessage]) -> None:
        """Every routable message of ``batch`` or none, durable when this returns.

        Raises ``Unroutable`` naming the messages no queue is bound to, after the others committed.
        """
        now = time.time()
        unrouted: list[OutgoingMessage] = []
        with self._transaction("publish") as conn:
            kind, links = self._exchange(conn, exchange, "publish")
            rows: list[dict[str, Any]] = []
            for message in batch:
                targets = route(kind, links, message.routing_key)
                if not targets:
                    unrouted.append(message)
                for queue in targets:
                    rows.append(
                        {
                            "queue": queue,
                            "routing_key": message.routing_key,
                            "message_id": message.message_id,
                            "content_type": message.content_type,
                            "headers": plain_headers(dict(message.headers)),
                            "body": message.body,
                            "deliveries": 0,
                            "published_at": now,
                        }
                    )
            if rows:
                conn.execute(insert(messages), rows)
        if unrouted:  # raised after the commit: the routable ones are taken, as on RabbitMQ
            raise unroutable(unrouted, exchange=exchange, system=SYSTEM)

    @staticmethod
    def _exchange(conn: Connection, exchange: str, operation: str) -> tuple[str, list[tuple[str, str]]]:
        kind = conn.scalar(select(exchanges.c.kind).where(exchanges.c.name == exchange))
        if kind is None:
            raise transport_error(f"exchange {exchange!r} is not declared", operation)
        links = conn.execute(select(bindings.c.queue, bindings.c.pattern).where(bindings.c.exchange == exchange))
        return str(kind), [(row.queue, row.pattern) for row in links]

    # -- claim and settle

    @staticmethod
    def _ready(queue: str, now: float) -> Any:
        return and_(messages.c.queue == queue, or_(messages.c.lease_until.is_(None), messages.c.lease_until < now))

    def has_ready(self, queue: str) -> bool:
        """A cheap read before claiming, so that idle consumers do not take SQLite's write lock."""
        with self._transaction("consume", read_only=True) as conn:
            query = select(messages.c.id).where(self._ready(queue, time.time())).limit(1)
            return conn.execute(query).first() is not None

    def claim(self, info: QueueInfo, limit: int, lease_seconds: float) -> tuple[list[Claimed], float]:
        """Lease up to ``limit`` ready messages, oldest first; returns them and the lease's end.

        A message already delivered more often than the queue's delivery limit (its consumers
        died, e.g. killed by it) goes to the dead letter channel instead.
        """
        now = time.time()
        lease_until = now + lease_seconds
        token = uuid.uuid4().hex
        oldest = (
            select(messages.c.id)
            .where(self._ready(info.name, now))
            .order_by(messages.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the one write lock anyway
        )
        claim = (
            update(messages)
            .where(messages.c.id.in_(oldest))
            .values(deliveries=messages.c.deliveries + 1, lease_until=lease_until, lease_token=token)
            .returning(*messages.c)
        )
        with self._transaction("claim") as conn:
            rows = sorted(conn.execute(claim).all(), key=lambda row: row.id)
            claimed = [
                Claimed(
                    row.id,
                    row.queue,
                    row.routing_key,
                    row.message_id,
                    row.content_type,
                    plain_headers(row.headers),
                    bytes(row.body),
                    row.deliveries,
                    token,
                )
                for row in rows
            ]
            if info.delivery_limit is None:
                return claimed, lease_until
            spent = [c for c in claimed if c.deliveries - 1 > info.delivery_limit]
            for message in spent:
                self._move_to_dead_letter(conn, message, info, DELIVERY_LIMIT_EXCEEDED, "DeliveryLimitExceeded")
            return [c for c in claimed if c not in spent], lease_until

    def renew(self, ids: Sequence[int], token: str, lease_seconds: float) -> tuple[set[int], float]:
        lease_until = time.time() + lease_seconds
        statement = (
            update(messages)
            .where(messages.c.id.in_(ids), messages.c.lease_token == token)
            .values(lease_until=lease_until)
            .returning(messages.c.id)
        )
        with self._transaction("renew") as conn:
            return set(conn.scalars(statement)), lease_until

    def release(self, ids: Sequence[int], token: str) -> None:
        """Give back claimed messages that were never handed to the handler: not a delivery."""
        statement = (
            update(messages)
            .where(messages.c.id.in_(ids), messages.c.lease_token == token)
            .values(lease_until=None, lease_token=None, deliveries=messages.c.deliveries - 1)
        )
        with self._transaction("release") as conn:
            conn.execute(statement)

    def ack(self, message: Claimed) -> None:
        with self._transaction("ack") as conn:
            result = conn.execute(delete(messages).where(*self._owned(message)))
            self._check_owned(result.rowcount, message, "ack")

    def requeue(self, message: Claimed) -> None:
        statement = update(messages).where(*self._owned(message)).values(lease_until=None, lease_token=None)
        with self._transaction("requeue") as conn:
            self._check_owned(conn.execute(statement).rowcount, message, "requeue")

    def dead_letter(self, message: Claimed, info: QueueInfo, reason: str, error_type: str) -> None:
        with self._transaction("dead_letter") as conn:
            self._move_to_dead_letter(conn, message, info, reason, error_type)

    def _move_to_dead_letter(
        self, conn: Connection, message: Claimed, info: QueueInfo, reason: str, error_type: str
    ) -> None:
        # one transaction: the copy exists if and only if the original is gone
        self._check_owned(conn.execute(delete(messages).where(*self._owned(message))).rowcount, message, "dead_letter")
        if info.dead_letter_exchange is None:
            raise transport_error(f"queue {info.name!r} has no dead letter exchange", "dead_letter")
        kind, links = self._exchange(conn, info.dead_letter_exchange, "dead_letter")
        targets = route(kind, links, message.routing_key)
        if not targets:
            raise transport_error(
                f"no queue bound to dead letter exchange {info.dead_letter_exchange!r}", "dead_letter"
            )
        ours = dead_letter_headers(
            reason=reason, error_type=error_type, queue=info.name, routing_key=message.routing_key
        )
        # the same bound as on RabbitMQ (its frame): a copy never grows past what the original plus ours allow
        headers = fit_headers(message.headers, ours, size_of=json_size)
        now = time.time()
        conn.execute(
            insert(messages),
            [
                {
                    "queue": queue,
                    "routing_key": message.routing_key,
                    "message_id": message.message_id,
                    "content_type": message.content_type,
                    "headers": headers,
                    "body": message.body,
                    "deliveries": 0,
                    "published_at": now,
                }
                for queue in targets
            ],
        )

    @staticmethod
    def _owned(message: Claimed) -> tuple[Any, Any]:
        return messages.c.id == message.id, messages.c.lease_token == message.lease_token

    @staticmethod
    def _check_owned(rowcount: int, message: Claimed, operation: str) -> None:
        if rowcount != 1:
            raise LeaseLost(
                f"lease on message {message.message_id} of {message.queue!r} ran out; it is delivered again",
                system=SYSTEM,
                operation=operation,
            )

    # -- counts

    def count_ready(self, queue: str) -> int:
        with self._transaction("message_count", read_only=True) as conn:
            self._queue_info(conn, queue, "message_count")
            query = select(func.count()).select_from(messages).where(self._ready(queue, time.time()))
            return int(conn.scalar(query) or 0)

    def purge(self, queue: str) -> int:
        with self._transaction("purge") as conn:
            self._queue_info(conn, queue, "purge")
            return int(conn.execute(delete(messages).where(self._ready(queue, time.time()))).rowcount)


__all__ = ["Claimed", "LeaseLost", "QueueInfo", "Store", "transport_error"]
