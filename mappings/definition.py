"""Compiling a definition file into rules, once, so that applying it never meets a bad definition.

Every check that can be made without data is made here (keys, paths against the canonical
model, value map names, two entries writing one field) and reported with the file and the
entry, e.g. ``.../erp_customer.yaml: fields[7] (addresses[0].country <-> LAND1): ...``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

import canonical_model
from mappings.convert import CONVERTERS
from mappings.errors import MappingDefinitionError
from mappings.paths import MISSING, FieldPath, Segment, format_path
from mappings.value_map import ValueMap


class Direction(StrEnum):
    TO_TARGET = "to_target"
    TO_CANONICAL = "to_canonical"


BOTH = frozenset(Direction)


@dataclass(frozen=True)
class Rule:
    """One compiled entry: where a value comes from and goes to, and what happens on the way."""

    entry: str
    canonical: FieldPath | None
    system: FieldPath | None
    directions: frozenset[Direction]
    required: bool = False
    default: object = MISSING
    constant: object = MISSING
    context: str | None = None
    value_map: ValueMap | None = None
    convert: Callable[[object], object] | None = None
    places: int | None = None
    max_length: int | None = None
    upper: bool = False
    invert: bool = False
    items: tuple[Rule, ...] | None = None

    def source(self, direction: Direction) -> FieldPath | None:
        return self.canonical if direction is Direction.TO_TARGET else self.system

    def target(self, direction: Direction) -> FieldPath | None:
        return self.system if direction is Direction.TO_TARGET else self.canonical


@dataclass(frozen=True)
class Definition:
    name: str
    source: str
    description: str
    model: type[BaseModel] | None
    system: str
    system_root: FieldPath | None
    rules: tuple[Rule, ...]
    #: the system's records travel as XML 1.0: text it cannot carry is refused on the way out
    xml: bool = False
    #: the system pads text fields with blanks to their width: trimmed on the way in
    fixed_width: bool = False


class ValueMapSource(Protocol):
    def value_map(self, name: str) -> ValueMap: ...

    def value_map_names(self) -> list[str]: ...


_TOP_KEYS = ("name", "description", "model", "system", "system_root", "system_format", "fixed_width", "fields")
_FORMATS = ("xml", "json")
_ENTRY_KEYS = (
    "canonical",
    "system",
    "direction",
    "required",
    "default",
    "constant",
    "context",
    "value_map",
    "type",
    "places",
    "max_length",
    "upper",
    "invert",
    "items",
)
# an entry that maps a list carries per-item entries and nothing that transforms a single value
_NOT_WITH_ITEMS = ("default", "constant", "context", "value_map", "type", "places", "max_length", "upper", "invert")


def compile_definition(raw: object, *, name: str, source: str, value_maps: ValueMapSource) -> Definition:
    """Check a parsed definition file and compile it; raises MappingDefinitionError."""
    if not isinstance(raw, dict):
        raise MappingDefinitionError(source, None, "a definition file must be a mapping with a 'fields' list")
    _no_unknown_keys(raw, _TOP_KEYS, source, None)
    if raw.get("name", name) != name:
        raise MappingDefinitionError(source, "name", f"{raw['name']!r} does not match the file name {name!r}")
    model = _model(raw.get("model"), source)
    system = raw.get("system", "system")
    description = raw.get("description", "")
    for key, value in (("system", system), ("description", description)):
        if not isinstance(value, str):
            raise MappingDefinitionError(source, key, "must be text")
    root = _path(raw.get("system_root"), source, "system_root") if raw.get("system_root") is not None else None
    system_format = raw.get("system_format", "json")
    if system_format not in _FORMATS:
        raise MappingDefinitionError(
            source, "system_format", f"must be one of {', '.join(_FORMATS)}, not {system_format!r}"
        )
    fixed_width = raw.get("fixed_width", False)
    if not isinstance(fixed_width, bool):
        raise MappingDefinitionError(source, "fixed_width", "must be true or false")
    entries = raw.get("fields")
    if not isinstance(entries, list) or not entries:
        raise MappingDefinitionError(source, "fields", "must be a non-empty list of entries")
    compiler = _Compiler(source, value_maps)
    rules = compiler.entries(entries, "fields", model)
    return Definition(
        name=name,
        source=source,
        description=description,
        model=model,
        system=system,
        system_root=root,
        rules=rules,
        xml=system_format == "xml",
        fixed_width=fixed_width,
    )


class _Compiler:
    def __init__(self, source: str, value_maps: ValueMapSource) -> None:
        self.source = source
        self.value_maps = value_maps

    def error(self, entry: str, reason: str) -> MappingDefinitionError:
        return MappingDefinitionError(self.source, entry, reason)

    def entries(self, raw: list[Any], where: str, model: Any) -> tuple[Rule, ...]:
        rules = tuple(self.entry(item, f"{where}[{index}]", model) for index, item in enumerate(raw))
        self.no_duplicate_targets(rules)
        return rules

    def entry(self, raw: object, where: str, model: Any) -> Rule:
        if not isinstance(raw, dict):
            raise self.error(where, "an entry must be a mapping such as {canonical: name, system: NAME1}")
        canonical = _path(raw["canonical"], self.source, where) if "canonical" in raw else None
        system = _path(raw["system"], self.source, where) if "system" in raw else None
        label = f"{where} ({_describe(canonical, system, raw)})"
        _no_unknown_keys(raw, _ENTRY_KEYS, self.source, label)
        if canonical is None and system is None:
            raise self.error(label, "needs a 'canonical' path, a 'system' path, or both")

        directions = self.directions(raw, canonical, system, label)
        flags = {key: self.flag(raw, key, label) for key in ("required", "upper", "invert")}
        element_model = self.check_canonical(canonical, model, label, is_list="items" in raw)

        if "items" in raw:
            clash = [key for key in _NOT_WITH_ITEMS if key in raw]
            if clash:
                raise self.error(label, f"an entry with 'items' maps a list; {clash[0]!r} does not apply to it")
            if canonical is None or system is None:
                raise self.error(label, "an entry with 'items' needs both a 'canonical' and a 'system' path")
            items = raw["items"]
            if not isinstance(items, list) or not items:
                raise self.error(label, "'items' must be a non-empty list of entries")
            return Rule(
                entry=label,
                canonical=canonical,
                system=system,
                directions=directions,
                required=flags["required"],
                items=self.entries(items, f"{where}.items", element_model),
            )

        constant = raw.get("constant", MISSING)
        if constant is None:
            raise self.error(label, "'constant' must have a value")
        if constant is not MISSING:
            others = [key for key in ("context", "default", "value_map", "type", "required") if key in raw]
            if others:
                raise self.error(label, f"a constant is written as it is; {others[0]!r} does not apply to it")
            if canonical is not None and system is not None:
                raise self.error(label, "a constant fills one side: give either 'canonical' or 'system', not both")
        context = raw.get("context")
        if context is not None and (not isinstance(context, str) or not context):
            raise self.error(label, "'context' must name a key of the context, e.g. kunnr")
        if (canonical is None or system is None) and constant is MISSING and context is None:
            side = "system" if canonical is None else "canonical"
            raise self.error(label, f"nothing to map from: a {side}-only entry needs a 'constant' or a 'context' key")

        value_map = self.value_map(raw, canonical, system, label, flags["invert"])
        type_name = raw.get("type")
        if type_name is not None and (not isinstance(type_name, str) or type_name not in CONVERTERS):
            raise self.error(
                label,
                f"unknown type {type_name!r}{_suggest(str(type_name), CONVERTERS)} (known: {', '.join(CONVERTERS)})",
            )
        places = self.places(raw, type_name, label)
        max_length = self.max_length(raw, system, label)
        if flags["invert"] and type_name != "bool":
            raise self.error(label, "'invert' negates a boolean: it needs 'type: bool'")
        default = raw.get("default", MISSING)
        if default is None:
            raise self.error(label, "'default' must have a value (leaving the field out is what happens anyway)")
        if default is not MISSING and canonical is None:
            raise self.error(label, "'default' is the canonical value used when there is none: it needs 'canonical'")
        return Rule(
            entry=label,
            canonical=canonical,
            system=system,
            directions=directions,
            required=flags["required"],
            default=default,
            constant=constant,
            context=context,
            value_map=value_map,
            convert=CONVERTERS[type_name] if type_name is not None else None,
            places=places,
            max_length=max_length,
            upper=flags["upper"],
            invert=flags["invert"],
        )

    def directions(
        self, raw: dict[str, Any], canonical: FieldPath | None, system: FieldPath | None, label: str
    ) -> frozenset[Direction]:
        declared = raw.get("direction", "both")
        if declared == "both":
            chosen = BOTH
        elif declared in tuple(Direction):
            chosen = frozenset({Direction(declared)})
        else:
            raise self.error(label, f"'direction' must be to_target, to_canonical or both, not {declared!r}")
        # a one-sided entry can only write the side it names
        if canonical is None:
            possible = frozenset({Direction.TO_TARGET})
        elif system is None:
            possible = frozenset({Direction.TO_CANONICAL})
        else:
            possible = BOTH
        if not chosen & possible:
            raise self.error(label, f"direction {declared} never applies: the entry only fills one side")
        return chosen & possible

    def flag(self, raw: dict[str, Any], key: str, label: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise self.error(label, f"{key!r} must be true or false")
        return value

    def value_map(
        self, raw: dict[str, Any], canonical: FieldPath | None, system: FieldPath | None, label: str, invert: bool
    ) -> ValueMap | None:
        name = raw.get("value_map")
        if name is None:
            return None
        if canonical is None or system is None:
            raise self.error(label, "a value map translates between the two sides: it needs both paths")
        if invert:
            raise self.error(label, "'invert' and 'value_map' do not combine")
        known = self.value_maps.value_map_names()
        if name not in known:
            raise self.error(
                label, f"unknown value map {name!r}{_suggest(str(name), known)} (known: {', '.join(known)})"
            )
        return self.value_maps.value_map(name)

    def places(self, raw: dict[str, Any], type_name: object, label: str) -> int | None:
        places = raw.get("places")
        if places is None:
            return None
        if type_name != "decimal":
            raise self.error(label, "'places' applies to 'type: decimal' only")
        if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 18:
            raise self.error(label, "'places' must be an integer from 0 to 18")
        return places

    def max_length(self, raw: dict[str, Any], system: FieldPath | None, label: str) -> int | None:
        max_length = raw.get("max_length")
        if max_length is None:
            return None
        if system is None:
            raise self.error(label, "'max_length' is the system field's length: it needs 'system'")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise self.error(label, "'max_length' must be a positive integer")
        return max_length

    def check_canonical(self, path: FieldPath | None, model: Any, label: str, *, is_list: bool) -> Any:
        """Check ``path`` against the canonical model (when known); returns a list entry's element model."""
        if path is None or model is None:
            return None
        annotation: Any = model
        for depth, segment in enumerate(path.segments):
            annotation = _strip_optional(annotation)
            if isinstance(segment, int):
                if typing.get_origin(annotation) is not list:
                    raise self.error(label, f"{format_path(path.segments[:depth])} is not a list")
                annotation = typing.get_args(annotation)[0]
                continue
            if typing.get_origin(annotation) is list:
                here = format_path(path.segments[:depth])
                raise self.error(label, f"{here} is a list: name a position, e.g. {here}[0].{segment}")
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise self.error(label, f"{format_path(path.segments[:depth])} has no fields")
            fields: dict[str, Any] = {name: info.annotation for name, info in annotation.model_fields.items()}
            fields.update({name: info.return_type for name, info in annotation.model_computed_fields.items()})
            if segment not in fields:
                raise self.error(
                    label, f"{annotation.__name__} has no field {segment!r}{_suggest(segment, list(fields))}"
                )
            annotation = fields[segment]
        if not is_list:
            return None
        annotation = _strip_optional(annotation)
        if typing.get_origin(annotation) is not list:
            raise self.error(label, f"'items' needs a list, but {path} is not one")
        element = typing.get_args(annotation)[0]
        return element if isinstance(element, type) and issubclass(element, BaseModel) else None

    def no_duplicate_targets(self, rules: tuple[Rule, ...]) -> None:
        for direction in Direction:
            written: list[tuple[tuple[Segment, ...], Rule]] = []
            for rule in rules:
                target = rule.target(direction)
                if direction not in rule.directions or target is None:
                    continue
                for earlier_path, earlier in written:
                    shorter = min(len(earlier_path), len(target.segments))
                    if earlier_path[:shorter] == target.segments[:shorter]:
                        raise self.error(
                            rule.entry,
                            f"duplicate target: {direction.value} writes {target}, "
                            f"which {earlier.entry} already writes ({format_path(earlier_path)})",
                        )
                written.append((target.segments, rule))


def _model(name: object, source: str) -> type[BaseModel] | None:
    if name is None:
        return None
    exported = [item for item in canonical_model.__all__ if _is_model(getattr(canonical_model, item))]
    if not isinstance(name, str) or name not in exported:
        raise MappingDefinitionError(
            source, "model", f"{name!r} is not a canonical model{_suggest(str(name), exported)}"
        )
    model: type[BaseModel] = getattr(canonical_model, name)
    return model


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _path(raw: object, source: str, where: str) -> FieldPath:
    if not isinstance(raw, str):
        raise MappingDefinitionError(source, where, f"a path must be text, not {raw!r}")
    try:
        return FieldPath.parse(raw)
    except ValueError as exc:
        raise MappingDefinitionError(source, where, str(exc)) from None


def _describe(canonical: FieldPath | None, system: FieldPath | None, raw: dict[str, Any]) -> str:
    if canonical is not None and system is not None:
        return f"{canonical} <-> {system}"
    if "constant" in raw:
        return f"{canonical or system} = {raw['constant']!r}"
    if "context" in raw:
        return f"{canonical or system} <- context {raw['context']}"
    return str(canonical or system)


def _no_unknown_keys(raw: dict[Any, Any], allowed: tuple[str, ...], source: str, where: str | None) -> None:
    for key in raw:
        if key not in allowed:
            raise MappingDefinitionError(
                source, where, f"unknown key {key!r}{_suggest(str(key), allowed)} (allowed: {', '.join(allowed)})"
            )


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; other unions and plain types come back unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


__all__ = ["BOTH", "Definition", "Direction", "Rule", "ValueMapSource", "compile_definition"]
