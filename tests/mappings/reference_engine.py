"""The mapping interpreter as it was before mappings were compiled (main at a81bba1), kept for tests only.

It walks a definition's rules on every call. The compiled functions (``mappings/compiled.py``) must give
exactly what it gives, values and errors alike: ``test_compiled.py`` runs both on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from canonical_model.errors import MappingError
from canonical_model.text import describe_char, xml_unsafe
from mappings.convert import Rejected, upper, with_places
from mappings.definition import Definition, Direction, Rule
from mappings.paths import MISSING, ROOT, FieldPath, PathStructureError, write
from mappings.paths import read as read_path

Context = MappingABC[str, object]


@dataclass(frozen=True)
class _Scope:
    """One call's direction and context, and where in both records the walk is (``lines[1]``)."""

    mapping: str
    system: str
    direction: Direction
    context: Context
    #: refuse text XML 1.0 cannot carry on the way out (``system_format: xml``)
    xml: bool = False
    #: trim the blanks a fixed-width system pads its fields with, on the way in (``fixed_width: true``)
    trim: bool = False
    canonical_at: FieldPath = ROOT
    system_at: FieldPath = ROOT

    def inside(self, canonical: FieldPath, system: FieldPath) -> _Scope:
        return replace(self, canonical_at=self.canonical_at / canonical, system_at=self.system_at / system)

    def error(self, rule: Rule, value: object, reason: str) -> MappingError:
        system = self.system_at / rule.system if rule.system is not None else None
        if rule.canonical is not None:
            return self.failure(self.canonical_at / rule.canonical, system, value, reason)
        # a field filled only from the context has no canonical path: name the context key instead
        return self.failure(f"context.{rule.context}", system, value, reason)

    def failure(self, canonical: FieldPath | str, system: FieldPath | None, value: object, reason: str) -> MappingError:
        where = f" [{self.system} field {system}]" if system is not None else ""
        return MappingError(str(canonical), value, f"{reason}{where}", mapping=self.mapping)

    def missing(self, rule: Rule) -> MappingError:
        if rule.source(self.direction) is None:
            reason = f"required, but the context gives no {rule.context!r}"
        elif rule.context is not None:
            reason = f"required, but missing (and the context gives no {rule.context!r})"
        else:
            reason = "required, but missing"
        return self.error(rule, None, reason)


def _apply_rules(rules: tuple[Rule, ...], data: MappingABC[str, Any], scope: _Scope) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rule in rules:
        target = rule.target(scope.direction)
        if scope.direction not in rule.directions or target is None:
            continue
        value = _map_list(rule, data, scope) if rule.items is not None else _map_value(rule, data, scope)
        if value is not MISSING:
            write(out, target, value)
    return out


def _map_value(rule: Rule, data: MappingABC[str, Any], scope: _Scope) -> Any:
    if rule.constant is not MISSING:
        return rule.constant
    value = _read_source(rule, data, scope)
    if scope.trim and isinstance(value, str):
        # "KG " is the code KG in a 3-character field: padding is not part of any value
        value = value.strip(" ")
    if _absent(value):
        if rule.default is not MISSING:
            if scope.direction is Direction.TO_CANONICAL:
                # the default is already a canonical value: it only needs its type
                return _step(rule, scope, rule.default, _typed)
            value = rule.default
        elif rule.required:
            raise scope.missing(rule)
        else:
            return MISSING
    mapped = _step(rule, scope, value, _forward if scope.direction is Direction.TO_TARGET else _backward)
    if scope.xml and isinstance(mapped, str):
        unsafe = xml_unsafe(mapped)
        if unsafe is not None:
            # refused with its field, never dropped or replaced: the system would store other text
            raise scope.error(rule, mapped, f"contains {describe_char(*unsafe)}, which XML 1.0 cannot carry")
    return mapped


def _read_source(rule: Rule, data: MappingABC[str, Any], scope: _Scope) -> Any:
    # a value the caller puts in the context wins over the record's own field
    if rule.context is not None:
        given = scope.context.get(rule.context, MISSING)
        if not _absent(given):
            return given
    source = rule.source(scope.direction)
    return MISSING if source is None else _read(data, source, rule, scope)


def _map_list(rule: Rule, data: MappingABC[str, Any], scope: _Scope) -> Any:
    source = rule.source(scope.direction)
    assert rule.items is not None and rule.canonical is not None and rule.system is not None and source is not None
    items = _read(data, source, rule, scope)
    if isinstance(items, MappingABC):
        items = [items]  # XML-to-dict converters give a single repeated element without its list
    if _absent(items) or (isinstance(items, list | tuple) and not items):
        if rule.required:
            raise scope.missing(rule)
        return MISSING
    if not isinstance(items, list | tuple):
        raise scope.error(rule, items, "expected a list")
    mapped = []
    for index, item in enumerate(items):
        inner = scope.inside(rule.canonical / index, rule.system / index)
        if isinstance(item, BaseModel):
            item = item.model_dump()
        if not isinstance(item, MappingABC):
            raise inner.failure(inner.canonical_at, inner.system_at, item, "expected an object")
        mapped.append(_apply_rules(rule.items, item, inner))
    return mapped


def _read(data: MappingABC[str, Any], path: FieldPath, rule: Rule, scope: _Scope) -> Any:
    try:
        return read_path(data, path)
    except PathStructureError as exc:
        raise scope.error(rule, exc.found, str(exc)) from None


def _step(rule: Rule, scope: _Scope, value: Any, step: Callable[[Rule, Any], Any]) -> Any:
    try:
        return step(rule, value)
    except Rejected as exc:
        raise scope.error(rule, value, exc.reason) from None


def _forward(rule: Rule, value: Any) -> Any:
    """canonical -> system: normalise, type, then look up; the length check sees the final value."""
    if rule.upper:
        value = upper(value)
    value = _typed(rule, value)
    if rule.invert:
        value = not value
    if rule.value_map is not None:
        value = rule.value_map.to_target(value)
    if rule.max_length is not None and isinstance(value, str) and len(value) > rule.max_length:
        raise Rejected(f"longer than {rule.max_length} characters")
    return value


def _backward(rule: Rule, value: Any) -> Any:
    """system -> canonical: normalise, look up, then type (a map's codes may be ints, e.g. 30 days)."""
    if rule.upper:
        value = upper(value)
    if rule.value_map is not None:
        value = rule.value_map.to_canonical(value)
    value = _typed(rule, value)
    if rule.invert:
        value = not value
    return value


def _typed(rule: Rule, value: Any) -> Any:
    if rule.convert is not None:
        value = rule.convert(value)
    if rule.places is not None:
        value = with_places(value, rule.places)
    return value


def _absent(value: object) -> bool:
    # SOAP and JSON systems send an empty string as often as they leave a field out
    return value is MISSING or value is None or value == ""


def to_target(
    definition: Definition, canonical: BaseModel | MappingABC[str, Any], context: Context | None = None
) -> Any:
    """What ``Mapping.to_target`` gave before compiling."""
    model = definition.model
    if isinstance(canonical, BaseModel):
        if model is not None and not isinstance(canonical, model):
            raise TypeError(f"mapping {definition.name} maps {model.__name__}, not {type(canonical).__name__}")
        canonical = canonical.model_dump()
    return _apply(definition, canonical, Direction.TO_TARGET, context)


def to_canonical(definition: Definition, system: MappingABC[str, Any], context: Context | None = None) -> Any:
    """What ``Mapping.to_canonical`` gave before compiling."""
    return _apply(definition, system, Direction.TO_CANONICAL, context)


def _apply(definition: Definition, data: object, direction: Direction, context: Context | None) -> dict[str, Any]:
    if not isinstance(data, MappingABC):
        raise TypeError(f"mapping {definition.name} needs a dict (or a canonical model), not {type(data).__name__}")
    scope = _Scope(
        definition.name,
        definition.system,
        direction,
        context or {},
        xml=definition.xml and direction is Direction.TO_TARGET,
        trim=definition.fixed_width and direction is Direction.TO_CANONICAL,
    )
    return _apply_rules(definition.rules, data, scope)
