"""Shared fixtures: the real services the tests cross.

A test that needs a service it cannot reach skips, except under CI (CI=true), where it fails:
a green CI must mean the real broker and database were used.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

RABBITMQ_URL = os.environ.get("ESB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_ADMIN_URL = os.environ.get("ESB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def missing_service(what: str) -> None:
    """Skip (or, under CI, fail) the current test because ``what`` cannot be reached."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{what} is not reachable, and under CI a missing service is a failure")
    pytest.skip(f"{what} is not reachable")


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Each test starts from structlog's defaults: a test that configured logging (the CLI sets the level
    to WARNING) must not hide the INFO lines a later test captures."""
    import structlog

    structlog.reset_defaults()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    if not _reachable("127.0.0.1", 5672):
        missing_service("RabbitMQ at 127.0.0.1:5672")
    return RABBITMQ_URL


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not _reachable("127.0.0.1", 5432):
        missing_service("PostgreSQL at 127.0.0.1:5432")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"esb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or concurrent run) uses, for queues, exchanges and files."""
    return f"t{uuid.uuid4().hex[:10]}"
