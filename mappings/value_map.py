"""Value maps: named code tables (country, unit, payment terms) used in both directions.

A file lists ``to_target`` pairs (canonical code -> system code). The way back is derived; where
two canonical codes share a system code the way back is ambiguous and the file must say which
one wins under ``to_canonical``, or it does not compile. ``to_canonical`` may also accept extra
system spellings, as long as each points at a canonical code the file knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mappings.convert import Rejected
from mappings.errors import MappingDefinitionError

Code = str | int

_KEYS = frozenset({"name", "description", "to_target", "to_canonical"})


@dataclass(frozen=True)
class ValueMap:
    name: str
    source: str
    forward: Mapping[Code, Code]
    inverse: Mapping[Code, Code]

    def to_target(self, value: object) -> Code:
        found = _lookup(self.forward, value)
        if found is None:
            raise Rejected(f"no system code for it in value map {self.name!r}")
        return found

    def to_canonical(self, value: object) -> Code:
        found = _lookup(self.inverse, value)
        if found is None:
            raise Rejected(f"no canonical code for it in value map {self.name!r}")
        return found


def _lookup(table: Mapping[Code, Code], value: object) -> Code | None:
    # True == 1 in a dict lookup; a boolean is never a code
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return table.get(value)


def compile_value_map(raw: object, *, name: str, source: str) -> ValueMap:
    """Check a parsed value-map file and derive its way back; raises MappingDefinitionError."""
    if not isinstance(raw, dict):
        raise MappingDefinitionError(source, None, "a value map file must be a mapping with a 'to_target' table")
    unknown = sorted(str(key) for key in raw if key not in _KEYS)
    if unknown:
        raise MappingDefinitionError(source, unknown[0], f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
    if raw.get("name", name) != name:
        raise MappingDefinitionError(source, "name", f"{raw['name']!r} does not match the file name {name!r}")

    forward = _table(raw.get("to_target"), "to_target", source)
    if not forward:
        raise MappingDefinitionError(source, "to_target", "must list at least one 'canonical: system' pair")
    explicit = _table(raw.get("to_canonical", {}), "to_canonical", source)
    for system_code, canonical_code in explicit.items():
        if canonical_code not in forward:
            raise MappingDefinitionError(
                source,
                f"to_canonical: {system_code}",
                f"maps back to {canonical_code!r}, which is not a canonical code of to_target",
            )

    sharing: dict[Code, list[Code]] = {}
    for canonical_code, system_code in forward.items():
        sharing.setdefault(system_code, []).append(canonical_code)
    inverse: dict[Code, Code] = {}
    for system_code, canonical_codes in sharing.items():
        if len(canonical_codes) > 1 and system_code not in explicit:
            listed = " and ".join(repr(code) for code in canonical_codes)
            raise MappingDefinitionError(
                source,
                f"to_target: {system_code}",
                f"{system_code!r} is the target of {listed}, so the way back is ambiguous; "
                f"say which one it maps back to under to_canonical, e.g. {{{system_code}: {canonical_codes[0]}}}",
            )
        inverse[system_code] = canonical_codes[0]
    inverse.update(explicit)
    return ValueMap(name=name, source=source, forward=MappingProxyType(forward), inverse=MappingProxyType(inverse))


def _table(raw: object, section: str, source: str) -> dict[Code, Code]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MappingDefinitionError(source, section, "must be a mapping of code: code")
    for key, value in raw.items():
        for what, code in (("code", key), ("value", value)):
            if isinstance(code, bool) or not isinstance(code, str | int):
                hint = " (YAML reads yes/no/on/off unquoted as booleans: quote it)" if isinstance(code, bool) else ""
                raise MappingDefinitionError(
                    source, f"{section}: {key}", f"{what} {code!r} must be text or an integer{hint}"
                )
    return dict(raw)


__all__ = ["Code", "ValueMap", "compile_value_map"]
