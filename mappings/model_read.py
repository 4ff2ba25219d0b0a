"""Which fields of a canonical model read the same by attribute as from ``model_dump()``.

``Mapping.to_target`` used to dump the whole model (for a sales order that computes every line's
``net_amount`` and the ``total``, more than the mapping itself costs) and read the dict. A field whose
value the python-mode dump gives back unchanged can be read by attribute instead: no serializer that
applies outside JSON, not excluded, its name as the dump's key, and (checked per call) a value of a type
the dump passes through. Anything else is read from the dump, as before.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel

#: value types the python-mode dump gives back as they are (a nested model becomes a dict, a list a new list)
SAME_IN_DUMP: Final = frozenset({str, int, float, bool, type(None), Decimal, date, datetime})

_JSON_ONLY: Final = frozenset({"json", "json-unless-none"})


def plain_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields and computed fields of ``model`` that ``model.model_dump()`` gives under their own
    name with the attribute's value (given a value of a type in ``SAME_IN_DUMP``, or a model or list that
    is walked further); empty when the model has its own serializer or dumps by alias."""
    schema: Any = model.__pydantic_core_schema__
    definitions = (
        {item["ref"]: item for item in schema.get("definitions", ())} if schema["type"] == "definitions" else {}
    )
    node = _model_node(schema, definitions)
    if (
        node is None
        or node.get("root_model")
        or "serialization" in node
        or model.model_config.get("serialize_by_alias")
    ):
        return frozenset()
    fields_node = node["schema"]
    if fields_node.get("type") != "model-fields":
        return frozenset()
    plain = set()
    for name, field in fields_node["fields"].items():
        excluded = field.get("serialization_exclude") or field.get("serialization_exclude_if") is not None
        if not excluded and name.isidentifier() and _no_serializer(field["schema"], definitions, set()):
            plain.add(name)
    for computed in fields_node.get("computed_fields", ()):
        name = computed["property_name"]
        if computed.get("alias", name) == name and _no_serializer(computed["return_schema"], definitions, set()):
            plain.add(name)
    return frozenset(plain)


def _model_node(schema: Any, definitions: dict[str, Any]) -> Any:
    """The ``model`` node under validators and references wrapped around it, or None."""
    seen: set[int] = set()
    while isinstance(schema, dict) and id(schema) not in seen:
        seen.add(id(schema))
        kind = schema.get("type")
        if kind == "model":
            return schema
        if kind == "definitions":
            schema = schema["schema"]
        elif kind == "definition-ref":
            schema = definitions.get(schema["schema_ref"])
        elif kind in ("function-after", "function-before", "function-wrap", "function-plain"):
            if "serialization" in schema:
                return None
            schema = schema.get("schema")
        else:
            return None
    return None


def _no_serializer(schema: Any, definitions: dict[str, Any], seen: set[str]) -> bool:
    """No serializer that runs in python mode anywhere in ``schema``, nested models aside (their class is
    checked on its own when a path reads into them)."""
    if isinstance(schema, list):
        return all(_no_serializer(item, definitions, seen) for item in schema)
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if kind == "model":
        return True
    if kind == "definition-ref":
        ref = schema["schema_ref"]
        if ref in seen:
            return True
        seen.add(ref)
        target = definitions.get(ref)
        return target is not None and _no_serializer(target, definitions, seen)
    serialization = schema.get("serialization")
    if isinstance(serialization, dict) and serialization.get("when_used", "always") not in _JSON_ONLY:
        return False
    return all(
        _no_serializer(value, definitions, seen)
        for key, value in schema.items()
        if key not in ("serialization", "metadata") and isinstance(value, dict | list)
    )


__all__ = ["SAME_IN_DUMP", "plain_fields"]
