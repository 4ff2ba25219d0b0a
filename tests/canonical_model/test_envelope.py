from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from canonical_model import Envelope, OrderLine, SalesOrder
from canonical_model.errors import InvalidMessage
from canonical_model.json_schema import EXPORTED, schema_of


def _order() -> SalesOrder:
    return SalesOrder(
        id="SO-1",
        customer_id="CUST-1",
        order_date=date(2026, 11, 23),
        lines=[OrderLine(product_id="MAT-1001", quantity=Decimal("2"), unit_price=Decimal("10.00"))],
    )


def test_envelope_round_trips_through_bytes() -> None:
    original = Envelope.new("order.placed", _order(), source="/crm", subject="CUST-1")
    parsed = Envelope.from_bytes(original.to_bytes())
    assert parsed == original
    assert parsed.data["lines"][0]["net_amount"] == "20.00"
    assert SalesOrder.model_validate(parsed.data).total == Decimal("20.00")


def test_caused_event_joins_the_correlation_and_names_its_cause() -> None:
    first = Envelope.new("order.placed", {"x": 1}, source="/crm", subject="CUST-1")
    second = Envelope.new("order.confirmed", {"y": 2}, source="/esb", cause=first)
    third = Envelope.new("invoice.issued", {"z": 3}, source="/esb", cause=second)
    assert second.correlationid == first.id and second.causationid == first.id
    assert third.correlationid == first.id and third.causationid == second.id
    assert third.subject == "CUST-1"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "not a valid envelope"),
        (json.dumps({"source": "/crm", "type": "order.placed"}).encode(), "data"),
        (json.dumps({"source": "/crm", "type": "Order Placed", "data": {}}).encode(), "type"),
        (json.dumps({"source": "/crm", "type": "a.b", "data": {}, "extra": 1}).encode(), "extra"),
    ],
)
def test_invalid_bodies_are_invalid_messages(body: bytes, where: str) -> None:
    with pytest.raises(InvalidMessage, match=where):
        Envelope.from_bytes(body)


def test_exported_json_schemas_are_current() -> None:
    directory = Path(__file__).parents[2] / "canonical_model" / "schemas"
    for name, model in EXPORTED.items():
        path = directory / f"{name}.schema.json"
        assert path.read_text() == schema_of(model), f"{path} is stale: run `esb schemas`"


def test_a_stated_total_that_does_not_match_the_lines_is_refused() -> None:
    data = _order().model_dump(mode="json")
    data["total"] = "999.00"
    with pytest.raises(ValueError, match="does not match the sum of the lines"):
        SalesOrder.model_validate(data)
    data = _order().model_dump(mode="json")
    data["lines"][0]["net_amount"] = "1.00"
    with pytest.raises(ValueError, match="does not match quantity x unit_price"):
        SalesOrder.model_validate(data)
