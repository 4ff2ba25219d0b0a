"""JSON Schema export of the canonical models: the contract other teams validate against."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from canonical_model.envelope import Envelope
from canonical_model.order import OrderConfirmed, OrderRejected, SalesOrder
from canonical_model.party import Customer
from canonical_model.product import Product

EXPORTED: dict[str, type[BaseModel]] = {
    "envelope": Envelope,
    "customer": Customer,
    "product": Product,
    "sales_order": SalesOrder,
    "order_confirmed": OrderConfirmed,
    "order_rejected": OrderRejected,
}


def schema_of(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(mode="serialization"), indent=2, sort_keys=True) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for each exported model; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in EXPORTED.items():
        path = directory / f"{name}.schema.json"
        path.write_text(schema_of(model))
        written.append(path)
    return written


__all__ = ["EXPORTED", "export_schemas", "schema_of"]
