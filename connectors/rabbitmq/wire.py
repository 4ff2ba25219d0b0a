"""pika's AMQP field-table decoder, bounded: a header from the wire must not break the connection.

pika decodes a message's header table in its I/O code, before any of ours runs, and recursively:
a table nested 1,000 deep (a few kB, well within a frame) raises ``RecursionError`` there, and a
timestamp field beyond the year 9999 raises ``OverflowError``. Either kills the consumer's
connection; the message comes back, kills it again, and every message prefetched with it burns a
delivery on the quorum queue, until the broker dead-letters them all (``delivery_limit``).

``install()`` replaces ``pika.data.decode_value`` (which pika's ``decode_table`` and the array
decoding look up at each call) with ``decode_value`` here:

- a table or array nested deeper than ``MAX_DEPTH`` is skipped by its length prefix and becomes
  ``TOO_DEEP`` (a string), so decoding never recurses further;
- a timestamp that is no date (beyond what ``datetime`` holds) stays its number of seconds;
- a float that is no number (NaN, infinity: the broker refuses them today) becomes ``None``.

Everything else is pika's own decoding (pika is pinned in constraints.txt; ``tests`` check the
patch is in place). A consumer then reads such headers like any other (``RabbitMQDelivery``).
"""

from __future__ import annotations

import struct
import threading
from datetime import UTC, datetime
from typing import Any

import pika.data

#: tables and arrays nested deeper than this (in a message's headers) are not decoded
MAX_DEPTH = 16
TOO_DEEP = f"…[nested deeper than {MAX_DEPTH} levels: not decoded]"

_pika_decode_value = pika.data.decode_value
_depth = threading.local()


def decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
    """pika's ``decode_value`` with the bounds above; returns ``(value, offset after it)``."""
    kind = encoded[offset : offset + 1]
    if kind == b"T":
        seconds = struct.unpack_from(">Q", encoded, offset + 1)[0]
        try:
            return datetime.fromtimestamp(seconds, UTC), offset + 9
        except (OverflowError, OSError, ValueError):
            return seconds, offset + 9
    if kind in (b"f", b"d"):
        try:
            decoded: tuple[Any, int] = _pika_decode_value(encoded, offset)
            return decoded
        except (OverflowError, ValueError):  # pika turns the float into an int: NaN and infinity cannot be
            return None, offset + (5 if kind == b"f" else 9)
    if kind in (b"F", b"A"):
        depth: int = getattr(_depth, "level", 0)
        if depth >= MAX_DEPTH:
            length = struct.unpack_from(">I", encoded, offset + 1)[0]
            return TOO_DEEP, offset + 5 + length
        _depth.level = depth + 1
        try:
            nested: tuple[Any, int] = _pika_decode_value(encoded, offset)
            return nested
        finally:
            _depth.level = depth
    value: tuple[Any, int] = _pika_decode_value(encoded, offset)
    return value


def install() -> None:
    """Make pika decode header tables with ``decode_value`` (idempotent; this process, every connection)."""
    pika.data.decode_value = decode_value


def installed() -> bool:
    return pika.data.decode_value is decode_value


__all__ = ["MAX_DEPTH", "TOO_DEEP", "decode_value", "install", "installed"]
