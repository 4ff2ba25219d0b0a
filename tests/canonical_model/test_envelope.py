from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

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


REQUIRED = {"specversion": "1.0", "id": "1", "source": "/crm"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "not a valid envelope"),
        (json.dumps({**REQUIRED, "type": "order.placed"}).encode(), "data"),
        (json.dumps({**REQUIRED, "type": "Order Placed", "data": {}}).encode(), "type"),
        (json.dumps({**REQUIRED, "type": "a.b", "data": {}, "ex-tra": 1}).encode(), "ex-tra"),
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


# Issue 7, case 8: CloudEvents on input, both ways.

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _cloudevent(**changes: object) -> dict[str, object]:
    """A valid CloudEvents 1.0 order.placed in structured JSON, as another producer writes it."""
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "https://partner.example/orders",
        "type": "order.placed",
        "subject": "CUST-1",
        "time": "2026-11-23T10:00:00Z",
        "datacontenttype": "application/json",
        "data": _order().model_dump(mode="json"),
    }
    event.update(changes)
    return event


def _parse(event: dict[str, object]) -> Envelope:
    return Envelope.from_bytes(json.dumps(event).encode())


@pytest.mark.parametrize("attribute", ["id", "specversion", "source", "type"])
def test_required_attributes_are_required_on_input(attribute: str) -> None:
    event = _cloudevent()
    del event[attribute]
    with pytest.raises(InvalidMessage, match=f"{attribute}: Field required"):
        _parse(event)


def test_the_same_body_parses_to_the_same_id_and_only_new_makes_one_up() -> None:
    body = json.dumps(_cloudevent()).encode()
    assert Envelope.from_bytes(body).id == Envelope.from_bytes(body).id == "A234-1234-1234"
    first, second = (Envelope.new("order.placed", {}, source="/crm") for _ in range(2))
    assert first.id != second.id and first.specversion == "1.0"


@pytest.mark.parametrize(
    "changes",
    [
        {"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"},
        {"dataschema": "https://partner.example/schemas/sales_order.json"},
        {"datacontenttype": "application/json; charset=utf-8"},
        {"datacontenttype": 'Application/JSON;Charset="UTF-8"'},
        {"partnerref": "P-77", "priority": 3, "urgent": True, "a" * 20: "x" * 1024},
    ],
)
def test_a_valid_cloudevent_is_accepted_with_its_extensions(changes: dict[str, object]) -> None:
    envelope = _parse(_cloudevent(**changes))
    for name, value in changes.items():
        assert getattr(envelope, name, None) == value or envelope.extensions[name] == value
    assert json.loads(envelope.to_bytes()).items() >= changes.items(), "extensions are written back"
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope


def test_traceparent_is_carried_on_the_envelope() -> None:
    envelope = _parse(_cloudevent(traceparent=TRACEPARENT))
    assert envelope.traceparent == TRACEPARENT and envelope.extensions == {}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"Trace-Parent": "x"}, "'Trace-Parent' is not a CloudEvents attribute name"),
        ({"trace_parent": "x"}, "is not a CloudEvents attribute name"),
        ({"UPPER": "x"}, "is not a CloudEvents attribute name"),
        ({"a" * 21: "x"}, "is not a CloudEvents attribute name"),
        ({"data_base64": "eA=="}, "is not a CloudEvents attribute name"),
        ({"ext": None}, "ext is null"),
        ({"ext": 1.5}, "ext is a float"),
        ({"ext": {"nested": 1}}, "ext is a dict"),
        ({"ext": 2**31}, "outside the 32-bit range"),
        ({"ext": "x" * 1025}, "longer than 1024"),
        ({f"e{i}": i for i in range(17)}, "17 extension attributes, at most 16"),
        ({"specversion": "0.3"}, "specversion"),
        ({"datacontenttype": "text/plain"}, "datacontenttype"),
        ({"datacontenttype": "application/json; charset=iso-8859-1"}, "datacontenttype"),
        ({"datacontenttype": "application/jsonx"}, "datacontenttype"),
        ({"dataschema": "not a uri"}, "dataschema"),
        ({"id": ""}, "id"),
    ],
)
def test_invalid_cloudevents_are_refused_with_the_reason(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidMessage, match=re.escape(reason)):
        _parse(_cloudevent(**changes))


@pytest.mark.parametrize("attribute", ["name", "id", "source", "subject", "type", "traceparent", "value", "dataschema"])
def test_an_oversized_attribute_is_refused_with_a_short_reason(attribute: str) -> None:
    huge = "x" * 300_000
    event = _cloudevent()
    if attribute == "name":
        event[huge] = "1"
    elif attribute == "value":
        event["ext"] = huge
    elif attribute == "dataschema":
        event["dataschema"] = "https://partner.example/" + huge
    else:
        event[attribute] = huge
    with pytest.raises(InvalidMessage) as raised:
        _parse(event)
    assert len(str(raised.value)) < 300, str(raised.value)[:400]


def test_the_envelope_schema_says_what_the_envelope_accepts() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_of(Envelope)))
    accepted = [
        _cloudevent(),
        _cloudevent(traceparent=TRACEPARENT, dataschema="urn:x:y", datacontenttype="application/json; charset=utf-8"),
        _cloudevent(partnerref="P-77", priority=3, urgent=True),
    ]
    for event in accepted:
        _parse(event)
        assert validator.is_valid(event), event
    refused = [{**_cloudevent(), "Bad-Name": 1}, _cloudevent(ext=1.5), _cloudevent(datacontenttype="text/plain")]
    for attribute in ("id", "specversion", "source", "type"):
        event = _cloudevent()
        del event[attribute]
        refused.append(event)
    for event in refused:
        with pytest.raises(InvalidMessage):
            _parse(event)
        assert not validator.is_valid(event), event


# Issue 7, case 6: dates outside the business calendar are refused, with the field named.


@pytest.mark.parametrize("order_date", ["9999-12-31", "2200-01-01", "1899-12-31", "0001-01-01"])
def test_an_order_dated_outside_the_business_calendar_is_refused(order_date: str) -> None:
    data = _order().model_dump(mode="json") | {"order_date": order_date}
    with pytest.raises(ValidationError) as raised:
        SalesOrder.model_validate(data)
    assert raised.value.errors()[0]["loc"] == ("order_date",)


@pytest.mark.parametrize("order_date", ["1900-01-01", "2199-12-31"])
def test_the_business_calendar_bounds_are_valid(order_date: str) -> None:
    data = _order().model_dump(mode="json") | {"order_date": order_date}
    assert SalesOrder.model_validate(data).order_date.isoformat() == order_date


@pytest.mark.parametrize("attribute", ["id", "source", "subject", "correlationid", "causationid"])
@pytest.mark.parametrize("value", ["m\x00x", "m\x1b]0;t\x07", "m\nX-Injected: 1"])
def test_an_attribute_that_is_stored_or_put_in_headers_refuses_control_characters(attribute: str, value: str) -> None:
    event = _cloudevent() | {attribute: value}
    with pytest.raises(InvalidMessage, match=f"{attribute}: .*control character"):
        _parse(event)


def test_a_body_over_the_limit_is_refused_before_it_is_parsed() -> None:
    """A 24 MB body of numbers cost the worker 500 MB to parse: a body over the limit is not parsed."""
    from canonical_model.envelope import MAX_BODY_BYTES

    event = _cloudevent()
    event["data"] = {"numbers": [0] * (MAX_BODY_BYTES // 2)}  # valid, and about twice the limit
    body = json.dumps(event).encode()
    assert len(body) > MAX_BODY_BYTES
    with pytest.raises(InvalidMessage, match=f"a body of {len(body)} bytes is over the limit of {MAX_BODY_BYTES}"):
        Envelope.from_bytes(body)
    assert Envelope.from_bytes(body, max_bytes=len(body)).data["numbers"][0] == 0
