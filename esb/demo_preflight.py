"""Before the demo writes anything: do the CRM's data and the ERP's data belong together?

The demo keeps both under ``data_dir`` (the CRM possibly elsewhere, e.g. PostgreSQL). When the
ERP's data is gone but the CRM's is kept, the new ERP numbers its customers from the start again
and hands out numbers the CRM already links to other customers (issue 6, case 9): the orders would
be dead-lettered as cross-reference conflicts, or booked for the wrong ERP customer. The demo says
so in one line, with the fix, instead.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from canonical_model.errors import PermanentError, TransientError
from connectors.urls import redact_url
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.services import CrmService
from esb.app import Application
from esb.config import EsbSettings


class DemoCannotRun(Exception):
    """The demo cannot run with this data; the message (one line) says what is wrong and how to fix it."""


def _fresh_data_hint(settings: EsbSettings) -> str:
    """How to give the demo a CRM and an ERP that start together, for where the CRM database is."""
    assert settings.database_url is not None
    url = make_url(settings.database_url)
    data_dir = settings.data_dir
    if url.get_backend_name() == "sqlite" and url.database:
        crm_file = Path(url.database)
        if crm_file.resolve().is_relative_to(data_dir.resolve()):
            return f"remove {data_dir}/ (or point --config to fresh databases) to run the demo again"
        return f"remove {data_dir}/ and {crm_file} (or point --config to fresh databases) to run the demo again"
    return (
        f"remove {data_dir}/ and point database_url (now {redact_url(settings.database_url)}) "
        "to an empty database to run the demo again"
    )


def check_crm_fits_new_erp(settings: EsbSettings, erp_db: Path) -> None:
    """Before the ERP starts on a new ``erp_db``: refuse a CRM that still holds ERP customer numbers.

    The new ERP numbers its customers from the start again and would hand the kept numbers to other
    customers (issue 6, case 9). Raises ``DemoCannotRun``; returns when the ERP's data exists or
    the CRM holds no ERP numbers.
    """
    if erp_db.exists():
        return
    assert settings.database_url is not None
    engine = create_db_engine(settings.database_url)
    try:
        upgrade(engine)
        links = CrmService(session_factory(engine)).cross_references("erp", limit=1)
    finally:
        engine.dispose()
    if links:
        raise DemoCannotRun(
            f"the CRM database {redact_url(settings.database_url)} holds ERP customer numbers from an earlier run, "
            f"but the ERP's data {erp_db} is new and would give those numbers to other customers; "
            + _fresh_data_hint(settings)
        )


def check_erp_knows_crm_links(app: Application) -> None:
    """Spot-check (oldest and newest link) that the running ERP has the customers the CRM links to.

    Raises ``DemoCannotRun`` when the ERP does not know a linked number or gives it to another
    customer (its data was replaced); an ERP that does not answer is left to the routes' retries.
    """
    for entity, crm_id, kunnr in app.crm.cross_references("erp"):
        if entity != "customer":
            continue
        try:
            owner = app.erp.get_customer(kunnr).get("EXTREF")
        except TransientError:
            return
        except PermanentError:
            owner = None
        if owner != crm_id:
            raise DemoCannotRun(
                f"the CRM database links customer {crm_id} to ERP customer {kunnr}, which the ERP "
                f"{'gives to ' + str(owner)[:40] if owner else 'does not know'} (its data was replaced); "
                + _fresh_data_hint(app.settings)
            )


__all__ = ["DemoCannotRun", "check_crm_fits_new_erp", "check_erp_knows_crm_links"]
