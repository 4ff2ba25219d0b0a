"""SQLAlchemy's and pydantic's errors at the CRM's edge, translated into the one error tree.

The table (``TRANSLATIONS``, first match wins; a test walks every SQLAlchemy error class through it)::

    OperationalError (locked, busy, connection lost,
      serialization failure, deadlock), InterfaceError,
      InternalError, DisconnectionError, pool TimeoutError  -> CrmUnavailable      (transient)
    StaleDataError, ObjectDeletedError                      -> CrmUnavailable      (a concurrent change: retry)
    IntegrityError, DataError                               -> CrmDataRefused      (permanent, naming the
                                                                                    table and column it can)
    any other SQLAlchemy error (ProgrammingError,
      InvalidRequestError, CompileError ...)                -> CrmDataRefused      (permanent: the same
                                                                                    statement fails again)
    pydantic ValidationError (a model built from the
      caller's input or from a stored row)                  -> InvalidRequest      (permanent, naming
                                                                                    model.field)

Messages carry the database's first line only, clipped: SQLAlchemy's own text holds the statement's
parameters and PostgreSQL's DETAIL line holds the values, which may be personal data.

``translate_errors`` applies the table to every public method of a class (``CrmService``) with one
line. A method keeps catching SQLAlchemy errors of its own statements inside itself (the services
catch ``IntegrityError`` of a lost race); only what escapes a public method is translated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from canonical_model.errors import EsbError, TransientError
from crm_core.errors import CrmError, InvalidRequest

SYSTEM = "crm"
#: characters of the database's message kept in a reason
TEXT_LIMIT = 200

_SQLITE_COLUMN = re.compile(r"constraint failed: (\w+)\.(\w+)")
_STATEMENT_TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)


class CrmUnavailable(TransientError):
    """The CRM database was unreachable, busy or in a conflicting concurrent change: retry later."""


class CrmDataRefused(CrmError):
    """The CRM database refused the change for good; ``table``/``column`` say where when known."""

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.column = column


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else f"{text[:TEXT_LIMIT]}...[{len(text) - TEXT_LIMIT} more chars]"


def database_said(exc: BaseException) -> str:
    """The database's (or SQLAlchemy's) message, first line only, without statement or parameters."""
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        text = str(exc.orig)
    else:
        text = str(exc.args[0]) if exc.args else ""
    first = text.strip().splitlines()
    return _clip(first[0]) if first else type(exc).__name__


def where_refused(exc: BaseException) -> tuple[str | None, str | None]:
    """(table, column) the error names: PostgreSQL's diagnostics, SQLite's message, or the statement."""
    if not isinstance(exc, sa_exc.StatementError):
        return None, None
    diag = getattr(exc.orig, "diag", None)
    table = getattr(diag, "table_name", None)
    column = getattr(diag, "column_name", None)
    if table:
        return table, column
    found = _SQLITE_COLUMN.search(str(exc.orig or ""))
    if found:
        return found.group(1), found.group(2)
    statement = _STATEMENT_TABLE.match(exc.statement or "")
    return (statement.group(1) if statement else None), None


def _unavailable(exc: BaseException, operation: str) -> EsbError:
    return CrmUnavailable(
        f"CRM database unavailable ({type(exc).__name__}): {database_said(exc)}", system=SYSTEM, operation=operation
    )


def _refused(exc: BaseException, operation: str) -> EsbError:
    table, column = where_refused(exc)
    where = f" in {table}{'.' + column if column else ''}" if table else ""
    error = CrmDataRefused(
        f"CRM database refused {operation}{where} ({type(exc).__name__}): {database_said(exc)}",
        table=table,
        column=column,
    )
    error.system, error.operation = SYSTEM, operation
    return error


#: first match wins: (SQLAlchemy error, how to say it in crm-esb's terms)
TRANSLATIONS: tuple[tuple[tuple[type[BaseException], ...], Callable[[BaseException, str], EsbError]], ...] = (
    (
        (
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.InternalError,
            sa_exc.DisconnectionError,
            sa_exc.TimeoutError,
            orm_exc.StaleDataError,
            orm_exc.ObjectDeletedError,
        ),
        _unavailable,
    ),
    ((sa_exc.IntegrityError, sa_exc.DataError), _refused),
    ((sa_exc.SQLAlchemyError,), _refused),
)


def _invalid(exc: BaseException, operation: str) -> EsbError:
    assert isinstance(exc, ValidationError)
    first = exc.errors(include_input=False, include_url=False)[0] if exc.error_count() else None
    loc = ".".join(str(part) for part in first["loc"]) if first else ""
    error = InvalidRequest(
        _clip(f"{exc.title}.{loc}" if loc else exc.title), _clip(first["msg"] if first else "invalid")
    )
    error.system, error.operation = SYSTEM, operation
    return error


def translate(exc: BaseException, operation: str) -> EsbError | None:
    """``exc`` in crm-esb's terms, or None when it is neither a SQLAlchemy nor a pydantic error."""
    if isinstance(exc, ValidationError):
        return _invalid(exc, operation)
    for types, make in TRANSLATIONS:
        if isinstance(exc, types):
            return make(exc, operation)
    return None


F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def _translating(method: F, operation: str) -> F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (sa_exc.SQLAlchemyError, ValidationError) as exc:
            error = translate(exc, operation)
            if error is None:  # pragma: no cover - every SQLAlchemyError matches the last row
                raise
            raise error from exc

    return wrapper  # type: ignore[return-value]


def translate_errors(cls: C) -> C:
    """Class decorator: SQLAlchemy and pydantic errors escaping a public method are translated (see the table)."""
    for name, attribute in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(attribute, staticmethod | classmethod):
            kind = type(attribute)
            setattr(cls, name, kind(_translating(attribute.__func__, name)))
        elif callable(attribute):
            setattr(cls, name, _translating(attribute, name))
    return cls


__all__ = [
    "SYSTEM",
    "TRANSLATIONS",
    "CrmDataRefused",
    "CrmUnavailable",
    "database_said",
    "translate",
    "translate_errors",
    "where_refused",
]
