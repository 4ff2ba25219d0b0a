"""JSON Schema export of the canonical models: the contract other teams validate against.

Each schema declares its dialect (``$schema``, JSON Schema 2020-12) and its identity (``$id``,
``urn:crm-esb:schema:<name>``). Amounts and quantities (``Decimal``) are described as the models
check them: a string in plain decimal notation whose integer and fraction digits, sign and bound
follow the type's ``max_digits``, ``decimal_places`` and ``ge``/``gt`` 0 (or a JSON integer in the
same range), so that a value is valid in the schema exactly when it is valid in the model.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from canonical_model.envelope import Envelope
from canonical_model.order import OrderConfirmed, OrderRejected, SalesOrder
from canonical_model.party import Customer
from canonical_model.product import Product
from canonical_model.types import plain_notation

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:crm-esb:schema:"

EXPORTED: dict[str, type[BaseModel]] = {
    "envelope": Envelope,
    "customer": Customer,
    "product": Product,
    "sales_order": SalesOrder,
    "order_confirmed": OrderConfirmed,
    "order_rejected": OrderRejected,
}


def decimal_json_schema(schema: core_schema.DecimalSchema) -> dict[str, Any]:
    """The JSON Schema of a ``Decimal`` with these constraints (see the module's docstring).

    Raises ``NotImplementedError`` for a constraint a pattern cannot say (a bound other than 0,
    an upper bound, ``max_digits`` without ``decimal_places``): such a type needs its schema written.
    """
    max_digits, places = schema.get("max_digits"), schema.get("decimal_places")
    ge, gt = schema.get("ge"), schema.get("gt")
    if any(schema.get(key) is not None for key in ("le", "lt", "multiple_of")) or (
        max_digits is not None and places is None
    ):
        raise NotImplementedError(f"no JSON Schema for a decimal constrained by {schema}")
    lower = ge if ge is not None else gt
    if lower is not None and Decimal(str(lower)) != 0:
        raise NotImplementedError(f"no JSON Schema for a decimal bounded by {lower}")
    whole = None if max_digits is None or places is None else max_digits - places
    # Leading zeros and trailing fraction zeros do not count, as in the model (it normalises).
    integer = "[0-9]+" if whole is None else ("0+" if whole == 0 else f"0*[0-9]{{1,{whole}}}")
    if places is None:
        fraction = r"(\.[0-9]+)?"
    else:
        fraction = r"(\.0+)?" if places == 0 else rf"(\.[0-9]{{1,{places}}}0*)?"
    # "not" also refuses any other character: Python's re (jsonschema) lets "$" match before a final newline
    refused = ["[^0-9.-]"]
    number: dict[str, Any] = {"type": "integer"}
    if whole is not None:
        number["maximum"] = 10**whole - 1
        number["minimum"] = -number["maximum"]
    if ge is not None:
        refused.append("^-.*[1-9]")  # no negative value (a negative zero is zero)
        number["minimum"] = 0
    elif gt is not None:
        refused += ["^-.*[1-9]", r"^-?[0.]*$"]  # neither negative nor zero
        number.pop("minimum", None)
        number["exclusiveMinimum"] = 0
    text = {"type": "string", "pattern": f"^-?{integer}{fraction}$", "not": {"pattern": "|".join(refused)}}
    return {"anyOf": [text, number]}


class CanonicalJsonSchema(GenerateJsonSchema):
    """Pydantic's generator, with decimals described as the models check them."""

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        return decimal_json_schema(schema)

    def ser_schema(
        self, schema: core_schema.SerSchema | core_schema.IncExSeqSerSchema | core_schema.IncExDictSerSchema
    ) -> JsonSchemaValue | None:
        # An amount is written in plain notation (a string), which is what its decimal schema describes
        # already, with the model's limits: describe it by that schema, not as any string.
        if schema.get("type") == "function-plain" and schema.get("function") is plain_notation:
            return None
        return super().ser_schema(schema)


def json_schema_of(model: type[BaseModel], name: str | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``model``, with ``$schema`` and, when ``name`` is given, ``$id``."""
    schema = model.model_json_schema(mode="serialization", schema_generator=CanonicalJsonSchema)
    schema["$schema"] = DIALECT
    if name is not None:
        schema["$id"] = f"{ID_PREFIX}{name}"
    return schema


def schema_of(model: type[BaseModel]) -> str:
    """The exported text of ``model``'s schema (``$id`` from its name in ``EXPORTED``)."""
    name = next((key for key, value in EXPORTED.items() if value is model), None)
    return json.dumps(json_schema_of(model, name), indent=2, sort_keys=True) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for each exported model; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in EXPORTED.items():
        path = directory / f"{name}.schema.json"
        path.write_text(schema_of(model))
        written.append(path)
    return written


__all__ = ["EXPORTED", "CanonicalJsonSchema", "decimal_json_schema", "export_schemas", "json_schema_of", "schema_of"]
