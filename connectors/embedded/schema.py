"""The embedded transport's tables: its own MetaData, so it can share a database without clashing.

Exchanges, queues and bindings mirror what RabbitMQ keeps; ``esb_messages`` holds one row per
message per queue. A row is *ready* when its ``lease_until`` is empty or past. Claiming it sets a
lease and a token (that every settle checks); a delayed retry sets ``lease_until`` with no token
(ready again from then on). ``deliveries`` counts hand-overs to a handler, not claims (see
``connectors.embedded.store``).

A queue row with ``shards`` > 1 is a *group*: the exchange binds to it, and publishing puts each
message in one of its shard queues ``<name>.<i>``. ``exclusive`` queues have one consumer at a
time: the one holding ``consumer_token`` until ``consumer_until``.

Columns added after the first release are listed in ``ADDED_COLUMNS``: ``Store.create_tables``
adds them to a database created before (``ALTER TABLE ... ADD COLUMN``).
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
    # a group of shard queues <name>.0 .. <name>.<shards-1> (> 1), or a queue (1)
    Column("shards", Integer, nullable=False, server_default="1"),
    # one consumer at a time (1): the holder of the consumer lease below
    Column("exclusive", Integer, nullable=False, server_default="0"),
    Column("consumer_token", String(32), nullable=True),
    Column("consumer_until", Double, nullable=True),  # epoch seconds
)

#: (table, column) added to a database created by an older version, in this order
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("esb_queues", "shards"),
    ("esb_queues", "exclusive"),
    ("esb_queues", "consumer_token"),
    ("esb_queues", "consumer_until"),
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
    # hand-overs to a handler before the current one (a claim alone does not count)
    Column("deliveries", Integer, nullable=False, default=0),
    # a claim's lease (with lease_token), or a delayed retry's not-before time (without): epoch seconds
    Column("lease_until", Double, nullable=True),
    Column("lease_token", String(32), nullable=True),
    Column("published_at", Double, nullable=False),
    Index("ix_esb_messages_queue_id", "queue", "id"),
)

__all__ = ["ADDED_COLUMNS", "bindings", "exchanges", "messages", "metadata", "queues"]
