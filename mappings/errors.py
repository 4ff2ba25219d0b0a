"""Errors of the mapping package itself.

A value that cannot be mapped at run time raises ``canonical_model.errors.MappingError``
(a permanent, per-message error). A definition or value-map file that is wrong raises
``MappingDefinitionError`` instead: that is a defect of the deployment, found when the
mapping is first loaded, and no message should be dead-lettered for it.
"""

from __future__ import annotations


class MappingDefinitionError(ValueError):
    """A definition or value-map file that cannot be compiled; names the file and the entry."""

    def __init__(self, source: str, entry: str | None, reason: str) -> None:
        self.source = source
        self.entry = entry
        self.reason = reason
        where = f"{source}: {entry}" if entry else source
        super().__init__(f"{where}: {reason}")


__all__ = ["MappingDefinitionError"]
