"""Every SQL statement of the embedded transport; each public method is one transaction.

Counting deliveries: a claim leases messages without counting them (a consumer that dies with 50
messages claimed has tried one of them at most). A message is counted when it is handed to a
handler, and only if it needs a write anyway: a *redelivery* (its row was claimed before and never
settled, so its previous claim may have handed it over and died) is counted by one UPDATE at
hand-over, which also proves that the lease is still ours; a first delivery costs nothing. So
``deliveries`` (``Delivery.previous_deliveries``) is the number of earlier hand-overs, counting
an unsettled earlier claim as one even when it never reached a handler: at most one too many, never
one per crash. A requeue counts its hand-over, a delayed retry and a give-back do not.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, inspect, or_, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from canonical_model.errors import TransportError
from connectors.base import (
    DELIVERY_LIMIT_EXCEEDED,
    HEADER_ATTEMPTS,
    HEADER_PARTITION_KEY,
    HeaderValue,
    OutgoingMessage,
    QueueSpec,
    Topology,
    dead_letter_headers,
    fit_headers,
    shard_of,
    unroutable,
)
from connectors.embedded.database import READ_ONLY
from connectors.embedded.routing import route
from connectors.embedded.schema import ADDED_COLUMNS, bindings, exchanges, messages, metadata, queues

SYSTEM = "embedded"
#: characters of a partition key kept in ``HEADER_PARTITION_KEY`` (the shard is chosen by the whole key)
PARTITION_KEY_MAX = 255


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


class NotHolder(Exception):
    """This consumer does not hold the exclusive queue's consumer lease (any more): it must not claim."""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    delivery_limit: int | None
    dead_letter_exchange: str | None
    #: > 1: a group of shard queues (nothing is stored in it; consume its shards)
    shards: int = 1
    #: one consumer at a time (the holder of the queue's consumer lease)
    exclusive: bool = False


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
    #: hand-overs before this claim, as recorded (see the module's docstring)
    deliveries: int
    lease_token: str
    #: the row was claimed before and never settled: its hand-over is counted (one UPDATE)
    redelivered: bool = False

    @property
    def past_deliveries(self) -> int:
        """Hand-overs before this one: the recorded ones, plus the unsettled previous claim of a redelivery."""
        return self.deliveries + 1 if self.redelivered else self.deliveries


@dataclass(frozen=True)
class Claim:
    messages: list[Claimed]
    lease_until: float
    #: an exclusive queue just taken over: a lease of the previous consumer still runs, nothing claimed
    blocked: bool = False


class Store:
    def __init__(
        self, engine: Engine, *, serialize: bool, write_lock: AbstractContextManager[Any] | None = None
    ) -> None:
        self._engine = engine
        # an in-memory database is one shared connection: its transactions must not interleave
        self._serial: AbstractContextManager[Any] = threading.RLock() if serialize else nullcontext()
        # a SQLite file: this process's writers queue here rather than in SQLite's busy handler, whose
        # growing sleeps (up to 100 ms) let a claim starve behind a stream of acks
        self._write_lock: AbstractContextManager[Any] = write_lock or nullcontext()

    @contextmanager
    def _transaction(self, operation: str, *, read_only: bool = False) -> Iterator[Connection]:
        writing = nullcontext() if read_only else self._write_lock
        try:
            with self._serial, writing, self._engine.connect() as connection:
                if read_only:
                    connection.execution_options(**{READ_ONLY: True})
                with connection.begin():
                    yield connection
        except SQLAlchemyError as exc:
            raise transport_error(f"{type(exc).__name__}: {exc}", operation) from exc

    # -- topology

    def create_tables(self) -> None:
        """Create the tables, and add the columns of ``ADDED_COLUMNS`` that a database created by an
        older version lacks (SQLite and PostgreSQL)."""
        try:
            metadata.create_all(self._engine)
        except SQLAlchemyError:
            # another process created them at the same moment (PostgreSQL); now they exist
            try:
                metadata.create_all(self._engine)
            except SQLAlchemyError as exc:
                raise transport_error(f"cannot create tables: {exc}", "declare") from exc
        try:
            self._add_missing_columns()
        except TransportError:  # another process added one at the same moment (PostgreSQL): look again
            self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        # one write transaction: on SQLite it holds the write lock, so two processes cannot both add one
        with self._transaction("declare") as conn:
            inspector = inspect(conn)
            tables = {table for table, _ in ADDED_COLUMNS}
            present = {(table, column["name"]) for table in tables for column in inspector.get_columns(table)}
            quote = conn.dialect.identifier_preparer.quote
            for table, name in ADDED_COLUMNS:
                if (table, name) in present:
                    continue
                column = metadata.tables[table].c[name]
                ddl = f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {column.type.compile(dialect=conn.dialect)}"
                default = column.server_default
                if default is not None:
                    ddl += f" DEFAULT {default.arg}"  # type: ignore[attr-defined]
                if not column.nullable:
                    ddl += " NOT NULL"
                conn.execute(sql_text(ddl))

    def declare(self, topology: Topology) -> None:
        dlx = topology.dead_letter_exchange
        final = topology.final_dead_letter_exchange
        with self._transaction("declare") as conn:
            self._upsert(conn, exchanges, [{"name": topology.exchange, "kind": "topic"}], ["name"])
            self._upsert(conn, exchanges, [{"name": dlx, "kind": "fanout"}], ["name"])
            self._upsert(conn, exchanges, [{"name": final, "kind": "fanout"}], ["name"])
            rows = [row for spec in topology.queues for row in self._queue_rows(spec, dlx)]
            # a dead-letter subscriber's own dead letters go to the dead letter queue only, never back to it
            rows += [row for spec in topology.dead_letter_subscribers for row in self._queue_rows(spec, final)]
            rows.append(
                {
                    "name": topology.dead_letter_queue,
                    "delivery_limit": None,
                    "dead_letter_exchange": None,
                    "shards": 1,
                    "exclusive": 0,
                }
            )
            self._upsert(conn, queues, rows, ["name"])
            links = [
                {"exchange": topology.exchange, "queue": spec.name, "pattern": pattern}
                for spec in topology.queues
                for pattern in spec.bindings
            ]
            links.append({"exchange": dlx, "queue": topology.dead_letter_queue, "pattern": ""})
            links += [{"exchange": dlx, "queue": spec.name, "pattern": ""} for spec in topology.dead_letter_subscribers]
            links.append({"exchange": final, "queue": topology.dead_letter_queue, "pattern": ""})
            self._upsert(conn, bindings, links, ["exchange", "queue", "pattern"])

    @staticmethod
    def _queue_rows(spec: QueueSpec, dead_letter_exchange: str) -> list[dict[str, Any]]:
        """The rows of one spec: the queue, or the group (bound, never holding messages) and its shards."""
        row = {"delivery_limit": spec.delivery_limit, "dead_letter_exchange": dead_letter_exchange}
        exclusive = 1 if spec.exclusive else 0
        if spec.shards <= 1:
            return [{"name": spec.name, **row, "shards": 1, "exclusive": exclusive}]
        group = {"name": spec.name, **row, "shards": spec.shards, "exclusive": 0}
        return [group] + [{"name": name, **row, "shards": 1, "exclusive": exclusive} for name in spec.queue_names]

    def delete(self, topology: Topology) -> None:
        specs = (*topology.queues, *topology.dead_letter_subscribers)
        names = [name for spec in specs for name in dict.fromkeys((spec.name, *spec.queue_names))]
        names.append(topology.dead_letter_queue)
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
        return QueueInfo(
            row.name, row.delivery_limit, row.dead_letter_exchange, int(row.shards or 1), bool(row.exclusive)
        )

    # -- publish

    def publish(self, exchange: str, batch: Sequence[OutgoingMessage]) -> None:
        """Every routable message of ``batch`` or none, durable when this returns.

        A queue bound with shards gets the message in one shard: ``shard_of(partition key, shards)``,
        the key being ``partition_key`` (kept in ``HEADER_PARTITION_KEY``), else the message id.
        Raises ``Unroutable`` naming the messages no queue is bound to, after the others committed.
        """
        now = time.time()
        unrouted: list[OutgoingMessage] = []
        with self._transaction("publish") as conn:
            kind, links, shards = self._exchange(conn, exchange, "publish")
            rows: list[dict[str, Any]] = []
            for message in batch:
                targets = route(kind, links, message.routing_key)
                if not targets:
                    unrouted.append(message)
                    continue
                headers = plain_headers(dict(message.headers))
                if message.partition_key is not None:
                    headers[HEADER_PARTITION_KEY] = message.partition_key[:PARTITION_KEY_MAX]
                key = message.partition_key if message.partition_key is not None else message.message_id or ""
                for queue in targets:
                    rows.append(
                        {
                            "queue": _shard(queue, shards.get(queue, 1), key),
                            "routing_key": message.routing_key,
                            "message_id": message.message_id,
                            "content_type": message.content_type,
                            "headers": headers,
                            "body": message.body,
                            "deliveries": 0,
                            "published_at": now,
                        }
                    )
            if rows:
                conn.execute(insert(messages), rows)
        if unrouted:  # raised after the commit: the routable ones are taken, as on RabbitMQ
            raise unroutable(unrouted, exchange=exchange, system=SYSTEM)

    def put(self, queue: str, message: OutgoingMessage) -> None:
        """``message`` into ``queue`` (a queue or shard that holds messages) only, durable when this returns;
        ``Unroutable`` if there is no such queue."""
        with self._transaction("publish") as conn:
            info = conn.execute(select(queues.c.shards).where(queues.c.name == queue)).first()
            if info is None or int(info.shards or 1) > 1:  # unknown, or a shard group (it holds none)
                raise unroutable([message], exchange=f"(queue {queue})", system=SYSTEM)
            headers = plain_headers(dict(message.headers))
            if message.partition_key is not None:
                headers[HEADER_PARTITION_KEY] = message.partition_key[:PARTITION_KEY_MAX]
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
                        "published_at": time.time(),
                    }
                ],
            )

    @staticmethod
    def _exchange(conn: Connection, exchange: str, operation: str) -> tuple[str, list[tuple[str, str]], dict[str, int]]:
        """The exchange's kind, its bindings (queue, pattern) and the shard count of each bound queue."""
        kind = conn.scalar(select(exchanges.c.kind).where(exchanges.c.name == exchange))
        if kind is None:
            raise transport_error(f"exchange {exchange!r} is not declared", operation)
        rows = conn.execute(
            select(bindings.c.queue, bindings.c.pattern, queues.c.shards)
            .select_from(bindings.outerjoin(queues, queues.c.name == bindings.c.queue))
            .where(bindings.c.exchange == exchange)
        ).all()
        return str(kind), [(row.queue, row.pattern) for row in rows], {row.queue: int(row.shards or 1) for row in rows}

    # -- claim and settle

    @staticmethod
    def _ready(queue: str, now: float) -> Any:
        return and_(messages.c.queue == queue, or_(messages.c.lease_until.is_(None), messages.c.lease_until < now))

    def has_ready(self, queue: str) -> bool:
        """A cheap read before claiming, so that idle consumers do not take SQLite's write lock."""
        with self._transaction("consume", read_only=True) as conn:
            query = select(messages.c.id).where(self._ready(queue, time.time())).limit(1)
            return conn.execute(query).first() is not None

    def claim(
        self, info: QueueInfo, limit: int, lease_seconds: float, *, holder: str | None = None, drained: bool = True
    ) -> Claim:
        """Lease up to ``limit`` ready messages, oldest first, without counting them.

        ``holder``: the consumer lease this claim needs (exclusive queues), renewed with it; ``NotHolder``
        when it is not held. ``drained`` False (the queue was just taken over): nothing is claimed while
        a lease of an earlier consumer runs (``Claim.blocked``), so the queue's order is kept.
        A message handed over more often than the queue's delivery limit (its consumers died, e.g.
        killed by it) goes to the dead letter channel instead.
        """
        now = time.time()
        lease_until = now + lease_seconds
        token = uuid.uuid4().hex
        oldest = (
            select(messages)
            .where(self._ready(info.name, now))
            .order_by(messages.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the one write lock anyway
        )
        with self._transaction("claim") as conn:
            if holder is not None and not self._hold(conn, info.name, holder, lease_until):
                raise NotHolder(info.name)
            if not drained:
                leased = and_(
                    messages.c.queue == info.name,
                    messages.c.lease_token.is_not(None),
                    messages.c.lease_until >= now,
                )
                if conn.execute(select(messages.c.id).where(leased).limit(1)).first() is not None:
                    return Claim([], lease_until, blocked=True)
            rows = conn.execute(oldest).all()
            if not rows:
                return Claim([], lease_until)
            ids = [row.id for row in rows]
            conn.execute(
                update(messages).where(messages.c.id.in_(ids)).values(lease_until=lease_until, lease_token=token)
            )
            claimed = [
                Claimed(
                    row.id,
                    row.queue,
                    row.routing_key,
                    row.message_id,
                    row.content_type,
                    plain_headers(row.headers),
                    bytes(row.body),
                    int(row.deliveries or 0),
                    token,
                    redelivered=row.lease_token is not None,
                )
                for row in rows
            ]
            if info.delivery_limit is None:
                return Claim(claimed, lease_until)
            spent = [c for c in claimed if c.past_deliveries > info.delivery_limit]
            for message in spent:
                self._move_to_dead_letter(conn, message, info, DELIVERY_LIMIT_EXCEEDED, "DeliveryLimitExceeded")
            return Claim([c for c in claimed if c not in spent], lease_until)

    def hand_over(self, message: Claimed) -> int | None:
        """Count the hand-over of a redelivery (a first delivery is not written); returns the delivery's
        previous deliveries, or None when its lease is gone (someone else has the message: do not hand it)."""
        if not message.redelivered:
            return message.deliveries
        statement = (
            update(messages)
            .where(*self._owned(message), messages.c.lease_until >= time.time())
            .values(deliveries=message.past_deliveries)
            .returning(messages.c.id)
        )
        with self._transaction("hand_over") as conn:
            if conn.execute(statement).first() is None:
                return None
        return message.past_deliveries

    def renew(
        self,
        claimed: Sequence[Claimed],
        lease_seconds: float,
        *,
        queue: str | None = None,
        holder: str | None = None,
    ) -> tuple[set[int], float, bool]:
        """Extend the leases of ``claimed`` (and of ``holder`` on ``queue``): returns the ids still leased
        by us, the lease's new end, and whether the consumer lease is still held (True without one)."""
        lease_until = time.time() + lease_seconds
        tokens = {message.lease_token for message in claimed}
        kept: set[int] = set()
        with self._transaction("renew") as conn:
            held = True
            if queue is not None and holder is not None:
                held = self._hold(conn, queue, holder, lease_until)
            if claimed:
                statement = (
                    update(messages)
                    .where(messages.c.id.in_([m.id for m in claimed]), messages.c.lease_token.in_(tokens))
                    .values(lease_until=lease_until)
                    .returning(messages.c.id)
                )
                kept = set(conn.scalars(statement))
        return kept, lease_until, held

    def release(self, claimed: Sequence[Claimed]) -> None:
        """Give back claimed messages that were never handed to the handler: not a delivery. A
        redelivery keeps its mark (its earlier claim may still have handed it over)."""
        if not claimed:
            return
        tokens = list({message.lease_token for message in claimed})
        fresh = [m.id for m in claimed if not m.redelivered]
        again = [m.id for m in claimed if m.redelivered]
        with self._transaction("release") as conn:
            if fresh:
                conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(fresh), messages.c.lease_token.in_(tokens))
                    .values(lease_until=None, lease_token=None)
                )
            if again:
                conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(again), messages.c.lease_token.in_(tokens))
                    .values(lease_until=None)
                )

    def ack(self, message: Claimed) -> None:
        with self._transaction("ack") as conn:
            result = conn.execute(delete(messages).where(*self._owned(message)))
            self._check_owned(result.rowcount, message, "ack")

    def put_back(
        self, message: Claimed, *, deliveries: int, not_before: float | None = None, headers: Any = None
    ) -> None:
        """Make the message ready again (at ``not_before``, else now) with ``deliveries`` recorded hand-overs
        and, when given, new ``headers``: a requeue, a give-back, or a delayed retry."""
        values: dict[str, Any] = {"lease_until": not_before, "lease_token": None, "deliveries": deliveries}
        if headers is not None:
            values["headers"] = headers
        statement = update(messages).where(*self._owned(message)).values(**values)
        with self._transaction("requeue" if not_before is None else "retry") as conn:
            self._check_owned(conn.execute(statement).rowcount, message, "requeue")

    def dead_letter(self, message: Claimed, info: QueueInfo, reason: str, error_type: str, stack: str = "") -> None:
        with self._transaction("dead_letter") as conn:
            self._move_to_dead_letter(conn, message, info, reason, error_type, stack)

    def _move_to_dead_letter(
        self, conn: Connection, message: Claimed, info: QueueInfo, reason: str, error_type: str, stack: str = ""
    ) -> None:
        # one transaction: the copy exists if and only if the original is gone
        self._check_owned(conn.execute(delete(messages).where(*self._owned(message))).rowcount, message, "dead_letter")
        if info.dead_letter_exchange is None:
            raise transport_error(f"queue {info.name!r} has no dead letter exchange", "dead_letter")
        kind, links, shards = self._exchange(conn, info.dead_letter_exchange, "dead_letter")
        targets = route(kind, links, message.routing_key)
        if not targets:
            raise transport_error(
                f"no queue bound to dead letter exchange {info.dead_letter_exchange!r}", "dead_letter"
            )
        ours = dead_letter_headers(
            reason=reason, error_type=error_type, queue=info.name, routing_key=message.routing_key, stack=stack
        )
        # the same bound as on RabbitMQ (its frame): a copy never grows past what the original plus ours allow
        # without the route's try count: a dead-letter subscriber starts its own retry schedule at its first try
        original = {k: v for k, v in message.headers.items() if k != HEADER_ATTEMPTS}
        headers = fit_headers(original, ours, size_of=json_size)
        partition_key = message.headers.get(HEADER_PARTITION_KEY)
        key = partition_key if isinstance(partition_key, str) else message.message_id or ""
        now = time.time()
        conn.execute(
            insert(messages),
            [
                {
                    "queue": _shard(queue, shards.get(queue, 1), key),
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

    # -- the consumer lease of an exclusive queue

    @staticmethod
    def _hold(conn: Connection, queue: str, holder: str, until: float) -> bool:
        """Extend ``holder``'s consumer lease on ``queue``; False when someone else took it over."""
        statement = (
            update(queues).where(queues.c.name == queue, queues.c.consumer_token == holder).values(consumer_until=until)
        )
        return conn.execute(statement).rowcount == 1

    def acquire(self, queue: str, holder: str, lease_seconds: float) -> bool:
        """Take the consumer lease of ``queue`` for ``holder`` if nobody holds it or its holder's ran out."""
        now = time.time()
        statement = (
            update(queues)
            .where(
                queues.c.name == queue,
                or_(
                    queues.c.consumer_token.is_(None),
                    queues.c.consumer_token == holder,
                    queues.c.consumer_until.is_(None),
                    queues.c.consumer_until < now,
                ),
            )
            .values(consumer_token=holder, consumer_until=now + lease_seconds)
        )
        with self._transaction("acquire") as conn:
            return conn.execute(statement).rowcount == 1

    def holder(self, queue: str) -> tuple[str | None, float | None]:
        """Who holds the consumer lease of ``queue`` and until when (epoch seconds), read only."""
        with self._transaction("consume", read_only=True) as conn:
            row = conn.execute(
                select(queues.c.consumer_token, queues.c.consumer_until).where(queues.c.name == queue)
            ).first()
        return (None, None) if row is None else (row.consumer_token, row.consumer_until)

    def give_up(self, queue: str, holder: str) -> None:
        """Let go of the consumer lease (a consumer stopping): the next one need not wait for it to run out."""
        statement = (
            update(queues)
            .where(queues.c.name == queue, queues.c.consumer_token == holder)
            .values(consumer_token=None, consumer_until=None)
        )
        with self._transaction("release") as conn:
            conn.execute(statement)

    # -- counts

    @staticmethod
    def _members(info: QueueInfo) -> list[str]:
        """The queues that hold ``info``'s messages: its shards, or itself."""
        return [f"{info.name}.{index}" for index in range(info.shards)] if info.shards > 1 else [info.name]

    @staticmethod
    def _ready_in(names: list[str], now: float) -> Any:
        return and_(messages.c.queue.in_(names), or_(messages.c.lease_until.is_(None), messages.c.lease_until < now))

    def count_ready(self, queue: str) -> int:
        """Ready messages of ``queue`` (of all its shards for a sharded group)."""
        with self._transaction("message_count", read_only=True) as conn:
            names = self._members(self._queue_info(conn, queue, "message_count"))
            query = select(func.count()).select_from(messages).where(self._ready_in(names, time.time()))
            return int(conn.scalar(query) or 0)

    def purge(self, queue: str) -> int:
        """Drop the ready messages of ``queue`` (of all its shards for a sharded group); returns how many."""
        with self._transaction("purge") as conn:
            names = self._members(self._queue_info(conn, queue, "purge"))
            return int(conn.execute(delete(messages).where(self._ready_in(names, time.time()))).rowcount)

    def oldest_ready_shard(self, group: QueueInfo) -> str | None:
        """The shard of ``group`` whose oldest ready message was published first (for ``get`` on a group)."""
        with self._transaction("get", read_only=True) as conn:
            query = (
                select(messages.c.queue)
                .where(self._ready_in(self._members(group), time.time()))
                .order_by(messages.c.id)
                .limit(1)
            )
            return conn.scalar(query)


def _shard(queue: str, shards: int, key: str) -> str:
    """The queue a message for ``queue`` goes to: itself, or its shard by the partition ``key``."""
    return f"{queue}.{shard_of(key, shards)}" if shards > 1 else queue


__all__ = ["Claim", "Claimed", "LeaseLost", "NotHolder", "QueueInfo", "Store", "transport_error"]
