"""The exported JSON Schemas agree with the models on money and quantities (issue 7, case 8).

A value is valid in the schema (validated with ``jsonschema``) exactly when the model accepts it,
for values hypothesis generates: decimals of every size and precision, negatives, zeros, NaN and
infinities, exponent notation, integers, floats, booleans and strings with stray characters.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from canonical_model.json_schema import EXPORTED, schema_of
from canonical_model.order import OrderLine
from canonical_model.product import Product

LINE = {"product_id": "MAT-1", "quantity": "1", "unit": "H87", "unit_price": "1.00"}
PRODUCT = {"id": "MAT-1", "name": "Pump", "unit": "H87", "list_price": "1.00", "currency": "EUR"}


def _validator(model: type[BaseModel]) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_of(model))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


LINE_SCHEMA = json.loads(schema_of(OrderLine))
LINE_SCHEMA["required"] = [name for name in LINE_SCHEMA["required"] if name != "net_amount"]  # derived, not input
LINE_VALIDATOR = jsonschema.Draft202012Validator(LINE_SCHEMA)
PRODUCT_VALIDATOR = _validator(Product)


def _agree(model: type[BaseModel], validator: jsonschema.Draft202012Validator, document: dict[str, Any]) -> None:
    text = json.dumps(document)
    try:
        model.model_validate_json(text)
        model_ok = True
    except ValidationError:
        model_ok = False
    schema_ok = validator.is_valid(json.loads(text))
    assert model_ok == schema_ok, f"model {'accepts' if model_ok else 'refuses'}, schema disagrees: {text}"


def _plain(value: Decimal) -> str:
    return format(value, "f")


decimals = st.decimals(allow_nan=True, allow_infinity=True, places=None) | st.decimals(
    min_value=-(10**14), max_value=10**14, places=4
)
texts = st.one_of(
    decimals.map(str),  # exponent notation, NaN, Infinity as Decimal writes them
    decimals.filter(lambda d: d.is_finite()).map(_plain),
    st.from_regex(r"\A-?0{0,3}[0-9]{0,16}(\.[0-9]{0,5}0{0,3})?\Z"),
    st.text(alphabet="0123456789.-+eE_ \n", max_size=20),
)
values = st.one_of(
    texts,
    st.integers(min_value=-(10**16), max_value=10**16),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)

AGREEMENT = settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(values)
def test_quantity_schema_agrees_with_the_model(value: object) -> None:
    _agree(OrderLine, LINE_VALIDATOR, {**LINE, "quantity": value})


@AGREEMENT
@given(values)
def test_money_schema_agrees_with_the_model(value: object) -> None:
    _agree(OrderLine, LINE_VALIDATOR, {**LINE, "unit_price": value})
    _agree(Product, PRODUCT_VALIDATOR, {**PRODUCT, "list_price": value})


@pytest.mark.parametrize("quantity", ["-1", "0", "NaN", "1.0001", "0.000", "-0", "1e3", " 1", "12345678901", 1.5])
def test_the_issues_quantities_are_invalid_in_both(quantity: object) -> None:
    document = {**LINE, "quantity": quantity}
    assert not LINE_VALIDATOR.is_valid(document)
    with pytest.raises(ValidationError):
        OrderLine.model_validate(document)


@pytest.mark.parametrize("quantity", ["1", "0.001", "1.0000", "9999999999.999", 2])
def test_valid_quantities_are_valid_in_both(quantity: object) -> None:
    document = {**LINE, "quantity": quantity}
    assert LINE_VALIDATOR.is_valid(document)
    assert OrderLine.model_validate(document).quantity == Decimal(str(quantity))


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_every_exported_schema_declares_its_dialect_and_id(name: str) -> None:
    schema = json.loads(schema_of(EXPORTED[name]))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:crm-esb:schema:{name}"
    jsonschema.Draft202012Validator.check_schema(schema)
