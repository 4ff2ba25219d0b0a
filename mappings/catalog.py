"""Finding, compiling and caching definitions and value maps by name.

The shipped files are package data (``mappings/definitions/*.yaml``, ``mappings/value_maps/*.yaml``),
read through importlib.resources so that they are found in an installed wheel as well as in a
checkout. A ``Catalog`` over other folders serves tests and integrators' own definitions.
"""

from __future__ import annotations

import difflib
import re
import threading
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from mappings.definition import compile_definition
from mappings.engine import Mapping
from mappings.errors import MappingDefinitionError
from mappings.value_map import ValueMap, compile_value_map
from mappings.yamlfile import load_yaml

SUFFIX = ".yaml"
_NAME = re.compile(r"[A-Za-z0-9_\-]+")  # a name, never a path that could leave the folder


class Catalog:
    """Definitions and value maps in two folders, each compiled once on first use."""

    def __init__(self, definitions: Traversable, value_maps: Traversable) -> None:
        self._definitions = definitions
        self._value_maps = value_maps
        self._mappings: dict[str, Mapping] = {}
        self._maps: dict[str, ValueMap] = {}
        # compiling twice would be harmless but wasteful; workers load mappings from several threads
        self._lock = threading.RLock()

    def mapping(self, name: str) -> Mapping:
        with self._lock:
            if name not in self._mappings:
                resource = _find(self._definitions, name, "mapping")
                source = str(resource)
                raw = load_yaml(resource, source)
                definition = compile_definition(raw, name=name, source=source, value_maps=self)
                self._mappings[name] = Mapping(definition)
            return self._mappings[name]

    def value_map(self, name: str) -> ValueMap:
        with self._lock:
            if name not in self._maps:
                resource = _find(self._value_maps, name, "value map")
                source = str(resource)
                self._maps[name] = compile_value_map(load_yaml(resource, source), name=name, source=source)
            return self._maps[name]

    def mapping_names(self) -> list[str]:
        return _names(self._definitions)

    def value_map_names(self) -> list[str]:
        return _names(self._value_maps)


def _names(folder: Traversable) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(item.name[: -len(SUFFIX)] for item in folder.iterdir() if item.name.endswith(SUFFIX))


def _find(folder: Traversable, name: str, what: str) -> Traversable:
    if not _NAME.fullmatch(name):
        raise MappingDefinitionError(str(folder), None, f"{name!r} is not a {what} name (letters, digits, _ and -)")
    resource = folder / f"{name}{SUFFIX}"
    if not resource.is_file():
        known = _names(folder)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise MappingDefinitionError(str(folder), None, f"no {what} named {name!r}{hint} (known: {', '.join(known)})")
    return resource


@cache
def default_catalog() -> Catalog:
    """The definitions and value maps shipped with crm-esb."""
    package = files("mappings")
    return Catalog(package / "definitions", package / "value_maps")


def load_mapping(name: str) -> Mapping:
    """The shipped mapping ``name`` (``mappings/definitions/<name>.yaml``), compiled once and cached."""
    return default_catalog().mapping(name)


def load_value_map(name: str) -> ValueMap:
    """The shipped value map ``name`` (``mappings/value_maps/<name>.yaml``), compiled once and cached."""
    return default_catalog().value_map(name)


__all__ = ["Catalog", "default_catalog", "load_mapping", "load_value_map"]
