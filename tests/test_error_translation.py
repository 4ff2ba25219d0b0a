"""Every library error our code can meet is translated at its edge into transient or permanent.

The classes are collected at test time by walking ``__subclasses__()`` of each library's base
error, so a class added by a library upgrade (or by us) that the translation tables miss makes
this fail. Each instance is raised inside the real edge (the ERP connector's ``translated``, the
RabbitMQ connector's ``translated``, the embedded transport's transaction, the CRM service
decorator, the flows' answer validation) and must come out as ``TransientError`` or
``PermanentError`` with the original as ``__cause__``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pika.exceptions
import pydantic
import pytest
import requests
import sqlalchemy.exc
import sqlalchemy.orm.evaluator
import sqlalchemy.orm.exc
import zeep.exceptions
from lxml import etree
from pika.adapters.utils import connection_workflow
from sqlalchemy import create_engine

import connectors.erp.errors as erp_errors
import connectors.erp.transport  # noqa: F401  (defines a zeep error of ours: NotSoapAnswer)
import connectors.rabbitmq.errors as rabbitmq_errors
from canonical_model.errors import EsbError, PermanentError, TransientError
from connectors.embedded.store import Store
from crm_core.db_errors import translate_errors
from flows.payloads import answers_validated

#: classes that are not translated, and why (none today: every class below has a row in a table)
NOT_TRANSLATED: dict[type[BaseException], str] = {}


def subclasses(base: type[BaseException]) -> list[type[BaseException]]:
    """``base`` and every subclass loaded now, each once, in a stable order."""
    seen: dict[type[BaseException], None] = {}
    todo = [base]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen[cls] = None
            todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: f"{c.__module__}.{c.__qualname__}")


class _Anything:
    """Stands in for a required argument whose value does not matter (an ORM state, a compiler ...)."""

    def __repr__(self) -> str:
        return "<anything>"

    def __str__(self) -> str:
        return "anything"


def _candidate_arguments(cls: type[BaseException]) -> Iterator[tuple[Any, ...]]:
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        required = [
            p for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        count = len(required)
    except (TypeError, ValueError):  # a C type without a signature
        count = 1
    yield ("boom",) if count == 0 else ("boom",) * count
    yield ()
    for n in range(1, 6):
        yield ("boom",) * n
        yield ("boom",) + (None,) * (n - 1)
        yield ("boom",) + (1,) * (n - 1)  # message, code, line, column (lxml)
        yield (1,) + ("boom",) * (n - 1)  # reply code, reply text (pika)
        yield ("boom",) * (n - 1) + (1,)  # message, document, position (json)
        yield (_Anything(),) * n


def instance_of(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` built generically: the arguments its ``__init__`` requires, as strings."""
    if issubclass(cls, pydantic.ValidationError):
        return pydantic.ValidationError.from_exception_data(
            "Customer", [{"type": "missing", "loc": ("name",), "input": {}}]
        )
    failures = []
    for args in _candidate_arguments(cls):
        try:
            error = cls(*args)
            str(error)  # some only fail when shown
            return error
        except Exception as exc:
            failures.append(f"{args!r}: {exc!r}")
    raise AssertionError(f"cannot build {cls.__qualname__}: {failures[-1]}")


def raised_through(edge: Callable[[], AbstractContextManager[Any]], error: BaseException) -> BaseException:
    try:
        with edge():
            raise error
    except BaseException as out:
        return out
    raise AssertionError("the edge swallowed the error")


def assert_translated(edge: Callable[[], AbstractContextManager[Any]], classes: list[type[BaseException]]) -> None:
    untranslated = []
    for cls in classes:
        if cls in NOT_TRANSLATED:
            continue
        error = instance_of(cls)
        out = raised_through(edge, error)
        if not isinstance(out, TransientError | PermanentError) or out.__cause__ is not error:
            untranslated.append(f"{cls.__module__}.{cls.__qualname__} -> {out!r}")
    assert not untranslated, "untranslated library errors:\n" + "\n".join(untranslated)


def lxml_text_errors() -> list[BaseException]:
    """What lxml raises for text XML 1.0 cannot carry: a control character, a noncharacter, a lone surrogate."""
    errors = []
    for text in ("Nordlicht\x0bTechnik GmbH", "a\ufffe", "a\ud800"):
        try:
            etree.Element("NAME1").text = text
        except ValueError as exc:
            errors.append(exc)
    assert len(errors) == 3
    return errors


# -- the ERP connector: zeep, requests, lxml -------------------------------------------------------


def erp_edge() -> AbstractContextManager[None]:
    return erp_errors.translated("CreateCustomer", "corr-1")


def erp_edge_with_request() -> AbstractContextManager[None]:
    return erp_errors.translated("CreateCustomer", "corr-1", {"CUSTOMER": {"NAME1": "Nordlicht\x0bTechnik GmbH"}})


@pytest.mark.parametrize("base", [zeep.exceptions.Error, requests.RequestException, etree.Error])
def test_every_erp_library_error_is_translated(base: type[BaseException]) -> None:
    classes = subclasses(base)
    assert len(classes) > 5  # the walk found the library's classes
    assert_translated(erp_edge, classes)


def test_lxml_text_errors_are_translated_at_the_erp_edge() -> None:
    for error in lxml_text_errors():
        out = raised_through(erp_edge_with_request, error)
        assert isinstance(out, PermanentError) and out.__cause__ is error
        assert "CUSTOMER.NAME1" in str(out)
    # the same error without a request that explains it is still named, not unexpected
    out = raised_through(lambda: erp_errors.translated("CreateCustomer", None), lxml_text_errors()[0])
    assert isinstance(out, PermanentError) and "XML 1.0" in str(out)


def test_a_value_error_that_is_not_lxml_text_stays_a_bug() -> None:
    error = ValueError("invalid literal for int() with base 10: 'x'")
    assert raised_through(lambda: erp_errors.translated("GetCustomer", None), error) is error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (requests.ConnectTimeout("t"), TransientError),
        (requests.ReadTimeout("t"), TransientError),
        (requests.ConnectionError("refused"), TransientError),
        (requests.exceptions.ChunkedEncodingError("cut"), TransientError),
        (requests.exceptions.InvalidHeader("line break in X-Correlation-ID"), PermanentError),
        (zeep.exceptions.TransportError("x", status_code=503), TransientError),
        (zeep.exceptions.TransportError("x", status_code=404), PermanentError),
        (zeep.exceptions.Fault("x", code="soap:Server.userException"), TransientError),
        (zeep.exceptions.Fault("x", code="soap:Client.BadArguments"), PermanentError),
        (zeep.exceptions.XMLSyntaxError("not an envelope"), TransientError),
        # issue 7 case 3: a DTD, entities or an external reference in an answer is refused for good
        (zeep.exceptions.DTDForbidden("html", None, None), PermanentError),
        (zeep.exceptions.EntitiesForbidden("x", "y"), PermanentError),
        (zeep.exceptions.ExternalReferenceForbidden("file:///etc/passwd"), PermanentError),
        (zeep.exceptions.ValidationError("missing NAME1"), PermanentError),
        (etree.XMLSyntaxError("bad", 1, 1, 1, None), TransientError),
    ],
)
def test_erp_translation_kinds(error: BaseException, kind: type[EsbError]) -> None:
    out = raised_through(erp_edge, error)
    assert isinstance(out, kind), out
    assert (out.system, out.operation, out.correlation_id) == ("erp", "CreateCustomer", "corr-1")


# -- the RabbitMQ connector: pika ------------------------------------------------------------------


#: every root pika raises from; ``AMQPError`` is not all of them (a stalled handshake raises
#: ``AMQPConnectorStackTimeout``, an ``AMQPConnectorException``, outside ``AMQPError``)
PIKA_ROOTS: list[type[BaseException]] = [
    pika.exceptions.AMQPError,
    connection_workflow.AMQPConnectorException,
    pika.exceptions.ChannelError,
    pika.exceptions.ReentrancyError,
]


def pika_exception_roots() -> set[type[BaseException]]:
    """The top-most exception classes defined in pika's modules (each one's bases are not pika's)."""
    roots: set[type[BaseException]] = set()
    for module in (pika.exceptions, connection_workflow):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("pika"):
                while any(base.__module__.startswith("pika") for base in cls.__bases__):
                    cls = next(base for base in cls.__bases__ if base.__module__.startswith("pika"))
                roots.add(cls)
    return roots


def test_the_walk_covers_every_root_pika_raises_from() -> None:
    assert pika_exception_roots() == set(PIKA_ROOTS)


@pytest.mark.parametrize("root", PIKA_ROOTS, ids=lambda root: root.__name__)
def test_every_pika_error_is_translated(root: type[BaseException]) -> None:
    classes = subclasses(root)
    assert classes
    assert_translated(lambda: rabbitmq_errors.translated("publish"), classes)


def test_a_connector_error_counts_as_a_connection_error() -> None:
    # the transport replaces its connection (and, at start-up, stops with one line) on these
    stalled = connection_workflow.AMQPConnectorStackTimeout("Timeout during AMQP handshake")
    assert isinstance(stalled, rabbitmq_errors.CONNECTION_ERRORS)


# -- SQLAlchemy: the embedded transport and the CRM ------------------------------------------------

SQLALCHEMY_ERRORS = sqlalchemy.exc.SQLAlchemyError


def test_every_sqlalchemy_error_is_translated_by_the_embedded_transport() -> None:
    store = Store(create_engine("sqlite://"), serialize=True)
    classes = subclasses(SQLALCHEMY_ERRORS)
    assert sqlalchemy.orm.exc.StaleDataError in classes and sqlalchemy.orm.evaluator.UnevaluatableError in classes
    assert_translated(lambda: store._transaction("claim"), classes)


@translate_errors
class _Service:
    """Stands for CrmService: the decorator is all the translation there is."""

    def __init__(self) -> None:
        self.error: BaseException = RuntimeError()

    def do(self) -> None:
        raise self.error


class _CrmEdge(AbstractContextManager[None]):
    """Raises what the ``with`` body raised from inside a decorated service's public method."""

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            service = _Service()
            service.error = exc
            service.do()


def test_every_sqlalchemy_and_pydantic_error_is_translated_by_the_crm() -> None:
    classes = subclasses(SQLALCHEMY_ERRORS) + subclasses(pydantic.ValidationError)
    assert_translated(_CrmEdge, classes)


def test_crm_translation_kinds() -> None:
    unavailable = raised_through(
        _CrmEdge, sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("database is locked"))
    )
    assert isinstance(unavailable, TransientError) and "database is locked" in str(unavailable)
    refused = raised_through(
        _CrmEdge,
        sqlalchemy.exc.IntegrityError(
            "INSERT INTO cross_references ...", {"crm_id": "CUST-1"}, Exception("UNIQUE constraint failed: x.y")
        ),
    )
    assert isinstance(refused, PermanentError)
    assert "CUST-1" not in str(refused)  # parameters may be personal data: never in a reason


# -- pydantic: models built from another system's answer ------------------------------------------


class _AnswerEdge(AbstractContextManager[None]):
    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:

            @answers_validated("the ERP's answer to CreateSalesOrder")
            def build() -> None:
                raise exc

            build()


def test_every_pydantic_error_is_translated_where_models_are_built_from_answers() -> None:
    assert_translated(_AnswerEdge, subclasses(pydantic.ValidationError))
