"""Alembic environment: run by crm_core.migrate() with a connection, or by the alembic CLI with a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from crm_core.db import create_db_engine
from crm_core.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///.esb/crm.db")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
