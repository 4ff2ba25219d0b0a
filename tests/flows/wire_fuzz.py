"""Generated hostile messages for the wire fuzz test (issue 7, acceptance 3), as hypothesis strategies.

Each malformed message is an ``OutgoingMessage`` with a message id of its own (``fuzz-<n>``, given
when it is drawn) and a body that no route can act on: not JSON, no envelope, an envelope with a
missing, oversized or forbidden attribute, an order whose data breaks the model, or a well-formed
``order.placed`` for an order the CRM does not have. Oversized values are built from a drawn size
and character (cheap for hypothesis), and every message stays under the broker's frame (128 kB).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import strategies as st

#: the largest generated value: with the rest of a message it stays under RabbitMQ's 131,072-byte frame
BIG = 120_000
_CHARS = st.sampled_from(["k", "é", "€", "\u0000", "\U0001f600", "<", "'"])


def _big_text(max_size: int = BIG) -> st.SearchStrategy[str]:
    return st.builds(lambda char, size: char * (size // len(char.encode())), _CHARS, st.integers(1, max_size))


def _order_data(order_id: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "customer_id": "C-FUZZ",
        "currency": "EUR",
        "order_date": "2026-11-23",
        "lines": [{"product_id": "MAT-1002", "quantity": "1", "unit": "H87", "unit_price": "89.50"}],
    }


def _envelope(order_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"env-{order_id}",
        "source": "/fuzz",
        "type": "order.placed",
        "data": _order_data(order_id),
    }


_REQUIRED = ["specversion", "id", "source", "type", "data"]
_ATTRIBUTES = ["id", "source", "type", "subject", "dataschema", "datacontenttype", "traceparent", "correlationid"]
_BAD_QUANTITIES = ["-1", "0", "NaN", "1.0001", "1e400", "99999999999999", "", "Infinity", 1.5, None, [], {}]
_BAD_SCALARS: list[Any] = [None, 0, -1, 2**70, 1.5, True, [], {}, "", "2.0", "1.0 "]


@st.composite
def malformed_body(draw: st.DrawFn, order_id: str) -> bytes:
    """One body no route can act on; ``order_id`` is never a CRM order (a well-formed order names no known one)."""
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "json",
                "missing",
                "oversized",
                "bad_attribute",
                "extension",
                "data",
                "quantity",
                "deep",
                "unknown_order",
                "wrong_type",
            ]
        )
    )
    envelope = _envelope(order_id)
    if kind == "bytes":
        return draw(st.binary(max_size=64).filter(lambda b: b.strip() != b""))
    if kind == "json":
        return draw(st.sampled_from([b"[]", b"null", b"1", b'"x"', b"{}", b"{", b"\xff\xfe{}", b'{"a":1}']))
    if kind == "missing":
        del envelope[draw(st.sampled_from(_REQUIRED))]
    elif kind == "oversized":
        envelope[draw(st.sampled_from(_ATTRIBUTES))] = draw(_big_text())
    elif kind == "bad_attribute":
        envelope[draw(st.sampled_from([*_REQUIRED, "time", "subject"]))] = draw(st.sampled_from(_BAD_SCALARS))
    elif kind == "extension":
        name = draw(st.one_of(_big_text(), st.sampled_from(["Trace-Parent", "data_base64", "x" * 21, "é", ""])))
        envelope[name] = draw(st.one_of(_big_text(2000), st.sampled_from(_BAD_SCALARS)))
    elif kind == "data":
        field = draw(st.sampled_from(["id", "customer_id", "currency", "order_date", "lines", "extra"]))
        envelope["data"][field] = draw(
            st.one_of(_big_text(), st.sampled_from([*_BAD_SCALARS, "9999-12-31", "XXX", [None]]))
        )
    elif kind == "quantity":
        envelope["data"]["lines"][0]["quantity"] = draw(st.sampled_from(_BAD_QUANTITIES))
    elif kind == "deep":
        depth = draw(st.integers(100, 20_000))
        text = json.dumps(envelope)
        return text[:-2].encode() + b', "x": ' + b"[" * depth + b"]" * depth + b"}}"
    elif kind == "unknown_order":
        pass  # well-formed: the CRM has no such order (NotFound, permanent)
    elif kind == "wrong_type":
        envelope["type"] = draw(st.sampled_from(["customer.created", "order.exploded", "order.confirmed"]))
    return json.dumps(envelope, ensure_ascii=False).encode()


def malformed_headers() -> st.SearchStrategy[dict[str, str | int]]:
    """Headers a publisher may set: oversized values, our own header names, x-delivery-count junk."""
    names = st.one_of(
        # no x-death: RabbitMQ 3.10 crashes on a junk one if it ever dead-letters the message itself, so a
        # failing run would break the shared broker; tests/connectors/test_wire_bounds.py covers it apart
        st.sampled_from(["x-delivery-count", "x-esb-error-reason", "x-esb-failed-at", "x-first-death-queue"]),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40).filter(
            lambda name: name != "x-death"
        ),
    )
    values = st.one_of(
        st.sampled_from(["abc", "", "-1", "1e9", "9" * 300]),
        st.integers(-(2**63), 2**63 - 1),
        _big_text(BIG // 2),
    )
    return st.dictionaries(names, values, max_size=3).filter(
        lambda headers: sum(len(k.encode()) + len(str(v).encode()) + 16 for k, v in headers.items()) < BIG
    )


class RawField:
    """A header value given as its AMQP field-table bytes (kind octet included), for what pika cannot encode."""

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded


def nested_table(depth: int) -> RawField:
    """A field table holding a table holding a table ... ``depth`` levels deep (a few bytes per level)."""
    encoded = b"F" + struct.pack(">I", 0)
    for _ in range(depth - 1):
        body = b"\x01a" + encoded
        encoded = b"F" + struct.pack(">I", len(body)) + body
    return RawField(encoded)


def timestamp(seconds: int) -> RawField:
    return RawField(b"T" + struct.pack(">Q", seconds))


__all__ = ["BIG", "RawField", "malformed_body", "malformed_headers", "nested_table", "timestamp"]
