"""The embedded transport's tables: its own MetaData, so it can share a database without clashing.

Exchanges, queues and bindings mirror what RabbitMQ keeps; ``esb_messages`` holds one row per
message per queue. A row is *ready* when it has no lease or its lease has run out; claiming it
sets a lease (and a token that every settle checks) and counts the delivery.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Double, Index, Integer, LargeBinary, MetaData, String, Table

metadata = MetaData()

exchanges = Table(
    "esb_exchanges",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),  # "topic" or "fanout"
)

queues = Table(
    "esb_queues",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("delivery_limit", Integer, nullable=True),  # None: no limit (the dead letter queue)
    Column("dead_letter_exchange", String(255), nullable=True),
)

bindings = Table(
    "esb_bindings",
    metadata,
    Column("exchange", String(255), primary_key=True),
    Column("queue", String(255), primary_key=True),
    Column("pattern", String(255), primary_key=True),
)

messages = Table(
    "esb_messages",
    metadata,
    # INTEGER PRIMARY KEY is SQLite's rowid: ascending, so ordering by id is publishing order
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("queue", String(255), nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("message_id", String(255), nullable=True),
    Column("content_type", String(255), nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("deliveries", Integer, nullable=False, default=0),
    Column("lease_until", Double, nullable=True),  # epoch seconds
    Column("lease_token", String(32), nullable=True),
    Column("published_at", Double, nullable=False),
    Index("ix_esb_messages_queue_id", "queue", "id"),
)

__all__ = ["bindings", "exchanges", "messages", "metadata", "queues"]
