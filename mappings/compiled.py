"""A compiled definition turned into plain Python functions, once, when the mapping is loaded.

Each direction's rules become the source text of one function: every entry is a few straight lines
(read, absent?, convert, check, write) with its paths, limits, value-map tables and messages bound as
constants, and a list's entries inlined in a loop. A call runs that code; nothing looks at a rule.
The functions give what docs/mappings.md says the rules mean, values and errors alike: a
``MappingError`` names the canonical path (``lines[1].unit``), the value and the system field, and
``tests/mappings/test_compiled.py`` compares them with the interpreter they replace.

``to_target`` gets a third function when the definition names its model: it reads a model instance
by attribute (``mappings.model_read``), which spares the ``model_dump()`` that computes every derived
field; a value it cannot vouch for makes it give up (``Unplain``) and the caller maps the dump.
"""

from __future__ import annotations

import linecache
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel

from canonical_model.errors import MappingError
from canonical_model.text import describe_char, xml_unsafe
from mappings.convert import Rejected, to_bool, to_date, to_decimal, to_int, to_str
from mappings.definition import Definition, Direction, Rule
from mappings.model_read import SAME_IN_DUMP, plain_fields
from mappings.paths import MISSING, FieldPath, PathStructureError, Segment, format_path, write

#: a compiled direction: (record, context) -> the other side's record
Apply = Callable[[Any, Mapping[str, object]], dict[str, Any]]


class Unplain(Exception):
    """The model-reading function met a value ``model_dump()`` might give differently: map the dump."""


@dataclass(frozen=True)
class Compiled:
    """The functions of one definition; ``to_target_model`` is None when its model cannot be read by attribute."""

    to_target: Apply
    to_canonical: Apply
    to_target_model: Apply | None


def compile_functions(definition: Definition) -> Compiled:
    """The functions for ``definition``; the source of each is kept as ``__source__`` for reading."""
    to_target = _Generator(definition, Direction.TO_TARGET, model=None).function()
    to_canonical = _Generator(definition, Direction.TO_CANONICAL, model=None).function()
    to_target_model: Apply | None = None
    if definition.model is not None:
        try:
            to_target_model = _Generator(definition, Direction.TO_TARGET, model=definition.model).function()
        except _NotReadable:
            to_target_model = None
    return Compiled(to_target, to_canonical, to_target_model)


@dataclass(frozen=True)
class _Field:
    """What an entry's errors name; built once per entry, used only when one is raised."""

    mapping: str
    system_name: str
    canonical: tuple[Segment, ...] | None
    system: tuple[Segment, ...] | None
    context: str | None
    missing_reason: str

    def error(self, c_at: tuple[Segment, ...], s_at: tuple[Segment, ...], value: object, reason: str) -> MappingError:
        if self.canonical is not None:
            path = format_path(c_at + self.canonical)
        else:
            # a field filled only from the context has no canonical path: name the context key instead
            path = f"context.{self.context}"
        where = f" [{self.system_name} field {format_path(s_at + self.system)}]" if self.system is not None else ""
        return MappingError(path, value, f"{reason}{where}", mapping=self.mapping)

    def missing(self, c_at: tuple[Segment, ...], s_at: tuple[Segment, ...]) -> MappingError:
        return self.error(c_at, s_at, None, self.missing_reason)

    def shape(
        self,
        c_at: tuple[Segment, ...],
        s_at: tuple[Segment, ...],
        at: tuple[Segment, ...],
        found: object,
        expected: str,
    ) -> MappingError:
        return self.error(c_at, s_at, found, str(PathStructureError(at, found, expected)))

    def unsafe(self, c_at: tuple[Segment, ...], s_at: tuple[Segment, ...], value: str) -> MappingError | None:
        found = xml_unsafe(value)
        if found is None:
            return None
        # refused with its field, never dropped or replaced: the system would store other text
        return self.error(c_at, s_at, value, f"contains {describe_char(*found)}, which XML 1.0 cannot carry")

    def not_an_object(
        self, c_at: tuple[Segment, ...], s_at: tuple[Segment, ...], index: int, item: object
    ) -> MappingError:
        assert self.canonical is not None and self.system is not None
        canonical = format_path(c_at + self.canonical + (index,))
        system = format_path(s_at + self.system + (index,))
        return MappingError(
            canonical, item, f"expected an object [{self.system_name} field {system}]", mapping=self.mapping
        )


class _NotReadable(Exception):
    """A path of the definition does not read a model by attribute: its dump is mapped instead."""


def _missing_reason(rule: Rule, direction: Direction) -> str:
    if rule.source(direction) is None:
        return f"required, but the context gives no {rule.context!r}"
    if rule.context is not None:
        return f"required, but missing (and the context gives no {rule.context!r})"
    return "required, but missing"


def _absent(name: str) -> str:
    # SOAP and JSON systems send an empty string as often as they leave a field out; a number or a date
    # never equals "", and comparing a Decimal to a str costs ten times an ``is``
    return f"({name} is MISSING or {name} is None or ({name}.__class__ not in NOT_TEXT and {name} == ''))"


#: types whose instances never equal "": the absent check asks them no ``==``
_NOT_TEXT = frozenset({Decimal, int, float, bool, date, datetime})
#: converters whose result is never text: no XML check and no type test before a length check
_NOT_TEXT_CONVERTERS = frozenset({to_int, to_decimal, to_date, to_bool})


_CONVERT_FAST: dict[Callable[[object], object], str] = {
    # a value already of the type passes each converter unchanged; anything else goes through it
    to_str: "if {x}.__class__ is not str: {x} = to_str({x})",
    to_int: "if {x}.__class__ is not int: {x} = to_int({x})",
    to_decimal: "if {x}.__class__ is not Decimal or not {x}.is_finite(): {x} = to_decimal({x})",
    to_date: "if {x}.__class__ is not date: {x} = to_date({x})",
    to_bool: "if {x}.__class__ is not bool: {x} = to_bool({x})",
}


class _Generator:
    """Writes one direction's function as source text, then executes it once."""

    def __init__(self, definition: Definition, direction: Direction, *, model: type[BaseModel] | None) -> None:
        self.definition = definition
        self.direction = direction
        self.model = model
        self.xml = definition.xml and direction is Direction.TO_TARGET
        self.trim = definition.fixed_width and direction is Direction.TO_CANONICAL
        self.lines: list[str] = []
        self.depth = 1
        self.names: dict[str, object] = {
            "MISSING": MISSING,
            "Mapping": Mapping,
            "BaseModel": BaseModel,
            "Decimal": Decimal,
            "date": date,
            "InvalidOperation": InvalidOperation,
            "Rejected": Rejected,
            "Unplain": Unplain,
            "SAME_IN_DUMP": SAME_IN_DUMP,
            "NOT_TEXT": _NOT_TEXT,
            "write": write,
            "to_str": to_str,
            "to_int": to_int,
            "to_decimal": to_decimal,
            "to_date": to_date,
            "to_bool": to_bool,
        }
        self.counter = 0

    # -- output ---------------------------------------------------------------------------------

    def function(self) -> Apply:
        self.rules(self.definition.rules, data="data", out="out", c_at="()", s_at="()", model=self.model)
        name = f"{self.direction.value}{'_model' if self.model is not None else ''}"
        source = "\n".join([f"def {name}(data, context):", "    out = {}", *self.lines, "    return out", ""])
        filename = f"<mapping {self.definition.name} {name}>"
        namespace = dict(self.names)
        # a traceback through the function shows its lines
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        exec(compile(source, filename, "exec"), namespace)  # our own text, built from a checked definition
        function: Apply = namespace[name]  # type: ignore[assignment]
        function.__source__ = source  # type: ignore[attr-defined]
        return function

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def const(self, value: object, hint: str) -> str:
        self.counter += 1
        name = f"_{hint}{self.counter}"
        self.names[name] = value
        return name

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}{self.counter}"

    # -- rules ----------------------------------------------------------------------------------

    def rules(
        self, rules: tuple[Rule, ...], *, data: str, out: str, c_at: str, s_at: str, model: type[BaseModel] | None
    ) -> None:
        active = [
            rule for rule in rules if self.direction in rule.directions and rule.target(self.direction) is not None
        ]
        targets = [self.target(rule).segments for rule in active]
        for rule in active:
            # !a escapes a line break in a context key or a constant: it must not end the comment
            self.line(f"# {rule.entry!a}")
            info = self.const(self.field_info(rule), "f")
            if rule.items is not None:
                self.list_rule(rule, info, data=data, out=out, c_at=c_at, s_at=s_at, model=model, targets=targets)
            else:
                self.value_rule(rule, info, data=data, out=out, c_at=c_at, s_at=s_at, model=model, targets=targets)

    def target(self, rule: Rule) -> FieldPath:
        target = rule.target(self.direction)
        assert target is not None
        return target

    def field_info(self, rule: Rule) -> _Field:
        return _Field(
            mapping=self.definition.name,
            system_name=self.definition.system,
            canonical=rule.canonical.segments if rule.canonical is not None else None,
            system=rule.system.segments if rule.system is not None else None,
            context=rule.context,
            missing_reason=_missing_reason(rule, self.direction),
        )

    def value_rule(
        self,
        rule: Rule,
        info: str,
        *,
        data: str,
        out: str,
        c_at: str,
        s_at: str,
        model: type[BaseModel] | None,
        targets: list[tuple[Segment, ...]],
    ) -> None:
        where = (info, c_at, s_at)
        if rule.constant is not MISSING:
            # written as it is: no type, no check
            self.write(out, self.target(rule), self.const(rule.constant, "constant"), targets)
            return
        source = rule.source(self.direction)
        if rule.context is not None:
            # a value the caller puts in the context wins over the record's own field
            self.line(f"v = context.get({rule.context!r}, MISSING)")
            if source is not None:
                self.line(f"if {_absent('v')}:")
                self.depth += 1
                self.read(data, source.segments, "v", where, model)
                self.depth -= 1
        elif source is not None:
            self.read(data, source.segments, "v", where, model)
        else:
            self.line("v = MISSING")
        if self.trim:
            # "KG " is the code KG in a 3-character field: padding is not part of any value
            self.line("if isinstance(v, str): v = v.strip(' ')")
        start = self.depth
        if rule.default is not MISSING:
            default = self.const(rule.default, "default")
            self.line(f"if {_absent('v')}:")
            self.depth += 1
            if self.direction is Direction.TO_CANONICAL:
                # the default is already a canonical value: it only needs its type
                self.steps(rule, where, value=default, typed_only=True)
                self.write(out, self.target(rule), "x", targets)
                self.depth -= 1
                self.line("else:")
                self.depth += 1
            else:
                self.line(f"v = {default}")
                self.depth -= 1
        elif rule.required:
            self.line(f"if {_absent('v')}: raise {info}.missing({c_at}, {s_at})")
        else:
            self.line(f"if not {_absent('v')}:")
            self.depth += 1
        self.steps(rule, where, value="v", typed_only=False)
        if self.xml and not _never_text(rule, self.direction):
            # every character XML 1.0 cannot carry is unprintable: the pattern runs only on the rare rest
            self.line("if isinstance(x, str) and not x.isprintable():")
            self.line(f"    if (e := {info}.unsafe({c_at}, {s_at}, x)) is not None: raise e")
        self.write(out, self.target(rule), "x", targets)
        self.depth = start

    def steps(self, rule: Rule, where: tuple[str, str, str], *, value: str, typed_only: bool) -> None:
        """``x`` = ``value`` carried over; a ``Rejected`` step names ``value`` in the error."""
        info, c_at, s_at = where
        body: list[str] = []
        forward = self.direction is Direction.TO_TARGET
        if not typed_only and rule.upper:
            body.append("if isinstance(x, str): x = x.upper()")
        if not typed_only and not forward and rule.value_map is not None:
            body += self.lookup(rule, forward=False)
        if rule.convert is not None:
            fast = _CONVERT_FAST.get(rule.convert)
            body.append(fast.format(x="x") if fast else f"x = {self.const(rule.convert, 'convert')}(x)")
        if rule.places is not None:
            # convert.with_places, its exponent worked out once; it refuses to round, since rounding money changes it
            exponent = self.const(Decimal(1).scaleb(-rule.places), "exponent")
            body += [
                "try:",
                f"    q = x.quantize({exponent})",
                "except InvalidOperation:",
                f"    raise Rejected({f'too many digits for {rule.places} decimal places'!r}) from None",
                f"if q != x: raise Rejected({f'more than {rule.places} decimal places'!r})",
                "x = q",
            ]
        if not typed_only and rule.invert:
            body.append("x = not x")
        if not typed_only and forward and rule.value_map is not None:
            body += self.lookup(rule, forward=True)
        if not typed_only and forward and rule.max_length is not None:
            limit = rule.max_length
            # after type: str and no value map, the value is text: no need to ask
            text = "" if rule.convert is to_str and rule.value_map is None else "isinstance(x, str) and "
            body.append(f"if {text}len(x) > {limit}: raise Rejected({f'longer than {limit} characters'!r})")
        if not body:
            self.line(f"x = {value}")
            return
        self.line("try:")
        self.line(f"    x = {value}")
        for text in body:
            self.line(f"    {text}")
        self.line("except Rejected as exc:")
        self.line(f"    raise {info}.error({c_at}, {s_at}, {value}, exc.reason) from None")

    def lookup(self, rule: Rule, *, forward: bool) -> list[str]:
        value_map = rule.value_map
        assert value_map is not None
        table = self.const(dict(value_map.forward if forward else value_map.inverse), "table")
        method = self.const(value_map.to_target if forward else value_map.to_canonical, "lookup")
        # a str is looked up directly; anything else (an int code, or a bool, which is never a code) as the map does
        return [f"x = {table}.get(x) if x.__class__ is str else {method}(x)", f"if x is None: x = {method}(None)"]

    def list_rule(
        self,
        rule: Rule,
        info: str,
        *,
        data: str,
        out: str,
        c_at: str,
        s_at: str,
        model: type[BaseModel] | None,
        targets: list[tuple[Segment, ...]],
    ) -> None:
        assert rule.items is not None and rule.canonical is not None and rule.system is not None
        source = rule.source(self.direction)
        assert source is not None
        where = (info, c_at, s_at)
        items = self.fresh("items")
        self.read(data, source.segments, items, where, model, whole=True)
        element: type[BaseModel] | None = None
        if model is not None:
            element = self.element_model(model, source.segments)
            self.line(f"if {items}.__class__ is not list and {items} is not None: raise Unplain")
        # XML-to-dict converters give a single repeated element without its list (a list is never a Mapping:
        # the class test spares the ABC's slower isinstance on the usual case)
        self.line(f"if {items}.__class__ is not list and isinstance({items}, Mapping): {items} = [{items}]")
        self.line(f"if {_absent(items)} or (isinstance({items}, (list, tuple)) and not {items}):")
        self.line(f"    {'raise ' + info + '.missing(' + c_at + ', ' + s_at + ')' if rule.required else 'pass'}")
        self.line("else:")
        start = self.depth
        self.depth += 1
        self.line(
            f"if not isinstance({items}, (list, tuple)): raise {info}.error({c_at}, {s_at}, {items}, 'expected a list')"
        )
        mapped, index, item, inner = self.fresh("mapped"), self.fresh("i"), self.fresh("item"), self.fresh("inner")
        c_in = self.fresh("c_in")
        s_in = self.fresh("s_in")
        self.line(f"{mapped} = []")
        self.line(f"{c_in} = {c_at} + {self.const(rule.canonical.segments, 'segments')}")
        self.line(f"{s_in} = {s_at} + {self.const(rule.system.segments, 'segments')}")
        self.line(f"for {index}, {item} in enumerate({items}):")
        self.depth += 1
        if element is not None:
            self.line(f"if {item}.__class__ is not {self.const(element, 'model')}: raise Unplain")
        else:
            self.line(f"if isinstance({item}, BaseModel): {item} = {item}.model_dump()")
            self.line(
                f"if not isinstance({item}, Mapping): raise {info}.not_an_object({c_at}, {s_at}, {index}, {item})"
            )
        self.line(f"{inner} = {{}}")
        self.rules(
            rule.items,
            data=item,
            out=inner,
            c_at=f"({c_in} + ({index},))",
            s_at=f"({s_in} + ({index},))",
            model=element,
        )
        self.line(f"{mapped}.append({inner})")
        self.depth -= 1
        self.write(out, self.target(rule), mapped, targets)
        self.depth = start

    # -- reading --------------------------------------------------------------------------------

    def read(
        self,
        data: str,
        segments: tuple[Segment, ...],
        target: str,
        where: tuple[str, str, str],
        model: type[BaseModel] | None,
        *,
        whole: bool = False,
    ) -> None:
        """``target`` = the value at ``segments`` of ``data`` (a Mapping, or a model instance when ``model``);
        MISSING when a key is absent, a position out of range or a parent None, as ``paths.read``."""
        if model is not None:
            self.read_model(data, segments, target, model, whole=whole)
            return
        info, c_at, s_at = where
        if len(segments) == 1:
            self.line(f"{target} = {data}.get({segments[0]!r}, MISSING)")
            return
        self.line(f"{target} = MISSING")
        start = self.depth
        current = f"{data}.get({segments[0]!r}, MISSING)"
        for depth in range(1, len(segments)):
            value = self.fresh("r")
            self.line(f"{value} = {current}")
            # after a name, MISSING ends the walk; after a position only None does
            is_name = isinstance(segments[depth - 1], str)
            self.line(f"if {value} is not None{f' and {value} is not MISSING' if is_name else ''}:")
            self.depth += 1
            segment = segments[depth]
            at = repr(segments[:depth])
            if isinstance(segment, int):
                self.line(
                    f"if not isinstance({value}, (list, tuple)): "
                    f"raise {info}.shape({c_at}, {s_at}, {at}, {value}, 'a list') from None"
                )
                self.line(f"if {segment} < len({value}):")
                self.depth += 1
                current = f"{value}[{segment}]"
            else:
                self.line(
                    f"if not isinstance({value}, Mapping): "
                    f"raise {info}.shape({c_at}, {s_at}, {at}, {value}, 'an object') from None"
                )
                current = f"{value}.get({segment!r}, MISSING)"
        self.line(f"{target} = {current}")
        self.depth = start

    def read_model(
        self, data: str, segments: tuple[Segment, ...], target: str, model: type[BaseModel], *, whole: bool
    ) -> None:
        """The same by attribute; ``data`` is an instance of exactly ``model`` (checked by the caller)."""
        if len(segments) > 1:
            self.line(f"{target} = MISSING")
        start = self.depth
        current, annotation = data, _strip_optional(model)
        for depth, segment in enumerate(segments):
            last = depth == len(segments) - 1
            if isinstance(segment, int):
                if typing.get_origin(annotation) is not list:
                    raise _NotReadable(segments)
                self.line(f"if {current}.__class__ is not list: raise Unplain")
                self.line(f"if {segment} < len({current}):")
                self.depth += 1
                expression = f"{current}[{segment}]"
                annotation = _strip_optional(typing.get_args(annotation)[0])
            else:
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    raise _NotReadable(segments)
                if segment not in plain_fields(annotation):
                    raise _NotReadable(segments)
                if depth > 0:
                    self.line(f"if {current}.__class__ is not {self.const(annotation, 'model')}: raise Unplain")
                expression = f"{current}.{segment}"
                annotation = _strip_optional(_field_annotation(annotation, segment))
            if last:
                self.line(f"{target} = {expression}")
                if not whole:
                    self.line(f"if {target}.__class__ not in SAME_IN_DUMP: raise Unplain")
            else:
                value = self.fresh("r")
                self.line(f"{value} = {expression}")
                self.line(f"if {value} is not None:")
                self.depth += 1
                current = value
        self.depth = start

    def element_model(self, model: type[BaseModel], segments: tuple[Segment, ...]) -> type[BaseModel]:
        annotation: Any = model
        for segment in segments:
            annotation = _strip_optional(annotation)
            if isinstance(segment, int):
                annotation = typing.get_args(annotation)[0]
            else:
                annotation = _field_annotation(annotation, segment)
        annotation = _strip_optional(annotation)
        element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if not (isinstance(element, type) and issubclass(element, BaseModel)):
            raise _NotReadable(segments)
        return element

    # -- writing --------------------------------------------------------------------------------

    def write(self, out: str, path: FieldPath, value: str, targets: list[tuple[Segment, ...]]) -> None:
        """``out`` at ``path`` = ``value``, creating the objects on the way, as ``paths.write``."""
        segments = path.segments
        if len(segments) == 1 and isinstance(segments[0], str):
            self.line(f"{out}[{segments[0]!r}] = {value}")
            return
        if not all(isinstance(segment, str) for segment in segments) or not _objects_only(segments, targets):
            # positions, or a parent another entry writes as a list: the general writer says what breaks
            self.line(f"write({out}, {self.const(path, 'path')}, {value})")
            return
        # every entry writing under these parents writes a name into them: each is a dict made here
        parent = out
        for segment in segments[:-1]:
            child = self.fresh("p")
            self.line(f"{child} = {parent}.get({segment!r})")
            self.line(f"if {child} is None: {child} = {parent}[{segment!r}] = {{}}")
            parent = child
        self.line(f"{parent}[{segments[-1]!r}] = {value}")


def _never_text(rule: Rule, direction: Direction) -> bool:
    """The value an entry writes to the system is never a str (its type's, with no value map after it)."""
    return direction is Direction.TO_TARGET and rule.convert in _NOT_TEXT_CONVERTERS and rule.value_map is None


def _objects_only(segments: tuple[Segment, ...], targets: list[tuple[Segment, ...]]) -> bool:
    for length in range(1, len(segments)):
        prefix = segments[:length]
        for other in targets:
            if other[:length] == prefix and (len(other) == length or not isinstance(other[length], str)):
                return False
    return True


def _field_annotation(model: type[BaseModel], name: str) -> Any:
    if name in model.model_fields:
        return model.model_fields[name].annotation
    return model.model_computed_fields[name].return_type


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; other unions and plain types come back unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


__all__ = ["Apply", "Compiled", "Unplain", "compile_functions"]
