"""What the route tests share: the reference ERP in its own process, and the application wired to it on
a given transport and CRM database (the real broker and PostgreSQL where asked)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from esb.app import Application
from esb.config import EsbSettings
from tests.flows.guarantees import StackApp, guarantee_app


@pytest.fixture(scope="module")
def erp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(db_path=tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@contextmanager
def application_on(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    erp_server: ErpServerProcess,
    namespace: str,
    transport: str,
    database: str = "sqlite",
) -> Iterator[Application]:
    """The application on ``transport`` (embedded, rabbitmq) and ``database`` (sqlite, postgresql), with
    its own namespace; its queues and exchanges are deleted afterwards."""
    overrides: dict[str, object] = {
        "data_dir": tmp_path,
        "namespace": namespace,
        "transport": transport,
        "erp": {"url": erp_server.url},
        "worker": {"material_sync_seconds": 0},
    }
    if database == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    if transport == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("rabbitmq_url")
    with Application(EsbSettings(**overrides)) as application:  # type: ignore[arg-type]
        try:
            yield application
        finally:
            delete = getattr(application.transport, "delete", None)
            if delete is not None:
                delete(application.topology)


@pytest.fixture(params=["embedded", "rabbitmq"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, erp_server: ErpServerProcess, unique_name: str
) -> Iterator[Application]:
    """The application on each transport, with a SQLite CRM."""
    with application_on(request, tmp_path, erp_server, unique_name, request.param) as application:
        yield application


@pytest.fixture
def stack_app(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    erp_server: ErpServerProcess,
    unique_name: str,
    transport: str,
    database: str,
) -> StackApp:
    """``guarantee_app`` bound to the test's ``transport`` and ``database`` (parametrized on the test), its
    own namespace and the module's reference ERP: call it with the overrides, use it as a context manager."""
    return functools.partial(guarantee_app, request, tmp_path, erp_server, unique_name, transport, database)
