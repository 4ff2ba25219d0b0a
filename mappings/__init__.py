"""Declarative mappings between the canonical model and each system's own records.

Definitions are data (``definitions/<system>_<object>.yaml``, value maps in ``value_maps/``);
this package compiles them once and applies them::

    from mappings import load_mapping

    erp_order = load_mapping("erp_sales_order")
    request = erp_order.to_target(order, context={"kunnr": "0000100001"})
    erp_order.canonical_path("ITEMS.ITEM[1].MATNR")  # "lines[1].product_id"

The file format is described in docs/mappings.md.
"""

from mappings.catalog import Catalog, load_mapping, load_value_map
from mappings.engine import Mapping
from mappings.errors import MappingDefinitionError
from mappings.value_map import ValueMap

__all__ = ["Catalog", "Mapping", "MappingDefinitionError", "ValueMap", "load_mapping", "load_value_map"]
