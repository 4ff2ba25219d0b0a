"""Issue 7, acceptance 3: hostile messages on the wire are dead-lettered one by one; nothing else is touched.

On each transport, 1,000 generated malformed messages (hypothesis, derandomized: not JSON, no
envelope, missing, oversized or forbidden attributes, order data that breaks the model, oversized
and junk headers; each under the broker's frame) are published to the routes' exchange, interleaved
with 100 valid orders placed in the CRM, some at the model's limits (13 quantity digits, 3 decimals,
the longest customer name). On RabbitMQ, messages that only raw pika can send come too: header
tables nested up to 5,000 deep, timestamps past year 9999, a header that nearly fills the frame,
short strings that are no UTF-8, a publisher's ``x-delivery-count: "abc"``.

Right: every malformed message is dead-lettered exactly once with a bounded reason, every valid
order is confirmed by the real reference ERP, no valid order reaches the dead letter queue, and the
consumers never lose their connection (RabbitMQ: one consumer connection per queue from start to
end, counted where pika opens it; both: no reconnect, failed claim or failed handler logged).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pika
import pika.data
import pytest
import structlog
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from canonical_model import OrderStatus
from connectors.base import HEADER_ERROR_REASON, OutgoingMessage
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import sync_materials
from tests.flows.wire_fuzz import RawField, malformed_body, malformed_headers, nested_table, timestamp

MALFORMED = 1000
VALID = 100
#: the longest reason a dead letter may carry (connectors.base.DEAD_LETTER_REASON_MAX)
REASON_MAX = 1000
ROUTING_KEYS = ["order.placed", "order.placed", "order.placed", "customer.created", "order.confirmed"]
#: log events that mean a consumer lost its footing
TROUBLE = {
    "consumer disconnected; reconnecting",
    "consumer failed; reconnecting",
    "cannot claim; retrying",
    "delivery handler failed",
    "delivery left unsettled; requeueing",
    "worker thread failed; restarting",
    "unreadable delivery; rejected to the dead letter exchange",
}


def _generated(count: int) -> list[OutgoingMessage]:
    drawn: list[OutgoingMessage] = []

    @settings(
        max_examples=count,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        number = len(drawn)
        body = data.draw(malformed_body(f"FUZZ-{number}"), label="body")
        headers = data.draw(malformed_headers(), label="headers")
        routing_key = data.draw(st.sampled_from(ROUTING_KEYS), label="routing key")
        drawn.append(OutgoingMessage(routing_key, body, f"fuzz-{number}", headers))

    draw()
    return drawn


def _raw_attacks() -> list[tuple[bytes | str, dict[str, Any], bytes]]:
    """(message id, properties, body) that only a raw AMQP client sends: what pika decodes before our code runs."""
    envelope = b'{"specversion":"1.0","id":"raw","source":"/fuzz","type":"order.placed","data":{}}'
    headers: list[dict[Any, Any]] = [{"deep": nested_table(depth)} for depth in (16, 17, 100, 1000, 5000)] + [
        {"when": timestamp(2**63)},
        {"when": timestamp(2**64 - 1)},
        {"x-delivery-count": "abc"},
        {"x-delivery-count": -5},
        {"x-delivery-count": 2**62},
        {"x-delivery-count": nested_table(3)},
        {b"\xff\xfe-key": b"\xff"},
        {"near-frame": "y" * 130_900},  # with the dead letter's own headers it would pass the 131,072-byte frame
        {"x-esb-error-reason": "z" * 100_000, "x-esb-failed-queue": "q" * 20_000},
    ]
    attacks: list[tuple[bytes | str, dict[str, Any], bytes]] = [
        (f"raw-{n}", {"headers": h}, b"not json" if n % 2 else envelope) for n, h in enumerate(headers)
    ]
    attacks += [
        (b"raw-id-\xff\xfe", {}, b"not json"),
        ("raw-ct", {"content_type": b"\xff\xfe", "type": b"\xc3", "app_id": b"\xff"}, b"not json"),
        ("raw-ts", {"timestamp": 2**64 - 1}, envelope),
    ]
    return attacks


def _publish_raw(url: str, exchange: str, attacks: list[tuple[bytes | str, dict[str, Any], bytes]]) -> None:
    original = pika.data.encode_value

    def encode_value(pieces: list[bytes], value: Any) -> int:
        if isinstance(value, RawField):
            pieces.append(value.encoded)
            return len(value.encoded)
        size: int = original(pieces, value)
        return size

    pika.data.encode_value = encode_value
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.confirm_delivery()
        for message_id, properties, body in attacks:
            channel.basic_publish(
                exchange, "order.placed", body, pika.BasicProperties(message_id=message_id, **properties)
            )
        connection.close()
    finally:
        pika.data.encode_value = original


class _CountingConnection(pika.BlockingConnection):  # type: ignore[misc]
    opened: Counter[str] = Counter()

    def __init__(self, parameters: pika.ConnectionParameters) -> None:
        super().__init__(parameters)
        name = (parameters.client_properties or {}).get("connection_name", "")
        _CountingConnection.opened[str(name)] += 1


def _customers(app: Application) -> list[str]:
    names = ["Grenzwert Maschinenbau GmbH", "N" * 35, "Ölmühle Süd & Söhne KG", "Lyon Hydraulique SA"]
    ids = []
    for name in names:
        new = NewCustomer.model_validate(
            {
                "name": name,
                "credit_limit": "999999999999.99",  # the most an amount holds (12 integer digits)
                "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
            }
        )
        ids.append(app.crm.create_customer(new).id)
    return ids


#: (material, quantity): the quantity model's limits (13 digits, 3 decimals) among ordinary ones
_LINES = [
    ("MAT-1003", "9999999999.999"),
    ("MAT-1002", "1"),
    ("MAT-1006", "0.001"),
    ("MAT-1004", "12.345"),
    ("MAT-1009", "999999.999"),
]


def _dead_letters(app: Application) -> list[Any]:
    taken = []
    while (delivery := app.transport.get(app.topology.dead_letter_queue)) is not None:
        delivery.ack()
        taken.append(delivery)
    return taken


def test_hostile_messages_are_dead_lettered_one_by_one_and_valid_orders_confirmed(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    rabbitmq = app.settings.transport == "rabbitmq"
    malformed = _generated(MALFORMED)
    assert len(malformed) == MALFORMED
    raw = _raw_attacks() if rabbitmq else []
    expected_ids = Counter(m.message_id for m in malformed) + Counter(
        (i.decode("utf-8", "replace") if isinstance(i, bytes) else i) for i, _, _ in raw
    )
    assert sync_materials(app.crm, app.erp).written >= 6
    customers = _customers(app)
    monkeypatch.setattr(pika, "BlockingConnection", _CountingConnection)
    _CountingConnection.opened.clear()

    order_ids: list[str] = []
    with structlog.testing.capture_logs() as logs, Worker(app):
        for round_ in range(VALID):
            app.transport.publish(malformed[round_ * 10 : round_ * 10 + 10])
            if rabbitmq and round_ < len(raw):
                _publish_raw(
                    app.settings.rabbitmq_url.get_secret_value(), app.topology.exchange, raw[round_ : round_ + 1]
                )
            lines = [_LINES[(round_ + k) % len(_LINES)] for k in range(1 + round_ % 3)]
            order = new_order(customers[round_ % len(customers)], *((m, q, None, None) for m, q in lines))
            order_ids.append(app.crm.place_order(order).id)

        deadline = time.monotonic() + 90
        dead_count = 0
        while time.monotonic() < deadline:
            views = app.crm.list_orders(order_ids)
            dead_count = app.transport.message_count(app.topology.dead_letter_queue)
            if all(v.status != OrderStatus.PLACED for v in views) and dead_count >= sum(expected_ids.values()):
                break
            time.sleep(0.2)

    statuses = Counter(v.status for v in app.crm.list_orders(order_ids))
    assert statuses == {OrderStatus.CONFIRMED: VALID}, statuses
    dead = _dead_letters(app)
    got = Counter(d.message_id for d in dead)
    assert got == expected_ids, f"missing {expected_ids - got}, extra {got - expected_ids}"
    for delivery in dead:
        reason = delivery.headers.get(HEADER_ERROR_REASON)
        assert isinstance(reason, str) and 0 < len(reason) <= REASON_MAX, (delivery.message_id, reason)
    trouble = [entry for entry in logs if entry["event"] in TROUBLE]
    assert trouble == [], trouble[:3]
    if rabbitmq:
        consumers = {name: n for name, n in _CountingConnection.opened.items() if " consumer " in f" {name} "}
        assert consumers and set(consumers.values()) == {1}, consumers
