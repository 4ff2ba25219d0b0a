from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def crm_sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated CRM database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_db_engine(url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()
