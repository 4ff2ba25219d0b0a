"""Reading definition and value-map files: safe YAML that refuses duplicate keys.

Plain PyYAML keeps the last of two equal keys without a word; in a value map that silently
drops an entry, so a duplicate is a definition error here, reported with its line.
"""

from __future__ import annotations

from importlib.resources.abc import Traversable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from mappings.errors import MappingDefinitionError


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark) from None
        if duplicate:
            raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(resource: Traversable, source: str) -> object:
    """The parsed document; a syntax error or a duplicate key raises MappingDefinitionError."""
    text = resource.read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        reason = problem if problem.startswith("duplicate key") else f"not valid YAML: {problem}"
        raise MappingDefinitionError(source, where, reason) from exc


__all__ = ["load_yaml"]
