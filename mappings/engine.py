"""Applying a compiled definition: canonical -> system (``to_target``) and back (``to_canonical``).

The rules are turned into plain functions once, when the mapping is loaded (``mappings.compiled``);
a call runs them. The engine does no I/O and keeps no state between calls. Whatever it cannot carry
over raises ``MappingError`` whose ``path`` is the canonical field (``lines[1].unit``) in both
directions; the reason names the system field too (``[erp field ITEMS.ITEM[1].VRKME]``), so a fault
can be followed from either end.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

from pydantic import BaseModel

from mappings.compiled import Apply, Unplain, compile_functions
from mappings.definition import Definition, Rule
from mappings.paths import FieldPath, Segment, format_path

Context = MappingABC[str, object]
_NO_CONTEXT: Context = {}


class Mapping:
    """One compiled mapping between a canonical model and a system's own record."""

    def __init__(self, definition: Definition) -> None:
        self._definition = definition
        functions = compile_functions(definition)
        self._to_target: Apply = functions.to_target
        self._to_canonical: Apply = functions.to_canonical
        self._to_target_model = functions.to_target_model

    @property
    def name(self) -> str:
        return self._definition.name

    @property
    def model(self) -> type[BaseModel] | None:
        """The canonical model the definition declares (``model:``), if any."""
        return self._definition.model

    @property
    def source(self) -> str:
        """The definition file it was compiled from."""
        return self._definition.source

    def __repr__(self) -> str:
        return f"<Mapping {self.name} from {self.source}>"

    def to_target(self, canonical: BaseModel | MappingABC[str, Any], context: Context | None = None) -> dict[str, Any]:
        """The system's record for a canonical object (a model instance or its dict).

        Raises ``MappingError`` for a value it cannot carry over, ``TypeError`` for another model or no dict.
        """
        model = self._definition.model
        if canonical.__class__ is model and self._to_target_model is not None:
            try:
                return self._to_target_model(canonical, context or _NO_CONTEXT)
            except Unplain:
                pass  # a value the dump may give differently: map the dump, as always
        if isinstance(canonical, BaseModel):
            if model is not None and not isinstance(canonical, model):
                raise TypeError(f"mapping {self.name} maps {model.__name__}, not {type(canonical).__name__}")
            canonical = canonical.model_dump()
        return self._apply(self._to_target, canonical, context)

    def to_canonical(self, system: MappingABC[str, Any], context: Context | None = None) -> dict[str, Any]:
        """The canonical dict for a system record; the caller validates it with the canonical model.

        Raises ``MappingError`` for a value it cannot carry over, ``TypeError`` when ``system`` is no dict.
        """
        return self._apply(self._to_canonical, system, context)

    def canonical_path(self, system_path: str) -> str | None:
        """The canonical field a system field path comes from, e.g. ``ITEMS.ITEM[1].MATNR`` -> ``lines[1].product_id``.

        Accepts paths with or without the definition's ``system_root`` (``CUSTOMER.LAND1`` or ``LAND1``);
        None when the field has no canonical counterpart (a constant, a context value) or is unknown.
        """
        try:
            segments = FieldPath.parse(system_path).segments
        except ValueError:
            return None
        root = self._definition.system_root
        if root is not None and segments[: len(root.segments)] == root.segments:
            segments = segments[len(root.segments) :]
        found = _find_canonical(self._definition.rules, segments, ())
        return format_path(found) if found else None

    def _apply(self, function: Apply, data: object, context: Context | None) -> dict[str, Any]:
        if not isinstance(data, MappingABC):
            raise TypeError(f"mapping {self.name} needs a dict (or a canonical model), not {type(data).__name__}")
        return function(data, context or _NO_CONTEXT)


def _find_canonical(
    rules: tuple[Rule, ...], segments: tuple[Segment, ...], base: tuple[Segment, ...]
) -> tuple[Segment, ...] | None:
    for rule in rules:
        if rule.system is None or rule.canonical is None:
            continue
        length = len(rule.system.segments)
        if segments[:length] != rule.system.segments:
            continue
        rest = segments[length:]
        canonical = base + rule.canonical.segments
        if not rest:
            return canonical
        if rule.items is not None and isinstance(rest[0], int):
            if len(rest) == 1:
                return canonical + rest[:1]
            found = _find_canonical(rule.items, rest[1:], canonical + rest[:1])
            if found is not None:
                return found
    return None


__all__ = ["Context", "Mapping"]
