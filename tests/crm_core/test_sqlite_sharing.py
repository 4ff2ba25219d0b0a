"""The default SQLite database is shared by several processes (worker, CLI, demo) at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select, text

from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.models import CustomerRow, OutboxRow

WRITER = """
import sys
from crm_core.db import create_db_engine, session_factory
from crm_core.schemas import NewCustomer
from crm_core.services import CrmService

crm = CrmService(session_factory(create_db_engine(sys.argv[1])))
for i in range(int(sys.argv[3])):
    crm.create_customer(NewCustomer.model_validate({
        "name": f"{sys.argv[2]} {i}",
        "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}],
    }))
"""


def test_sqlite_is_tuned_for_sharing(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert int(connection.execute(text("PRAGMA busy_timeout")).scalar() or 0) >= 5000


def test_several_processes_write_at_once_without_losing_a_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, f"writer{n}", "40"], stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(CustomerRow)) == 160
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == 160
