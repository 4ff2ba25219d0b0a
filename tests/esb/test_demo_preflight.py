"""The demo's checks that the CRM's data and the ERP's data belong together (issue 6, case 9 / acceptance 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.schemas import NewCustomer
from crm_core.services import CrmService
from esb.app import Application
from esb.config import EsbSettings
from esb.demo_preflight import DemoCannotRun, check_crm_fits_new_erp, check_erp_knows_crm_links
from mappings import load_mapping


def test_a_kept_postgresql_crm_with_a_new_erp_is_refused_with_the_fix_and_the_password_masked(
    postgres_url: str, tmp_path: Path
) -> None:
    # the server trusts local connections, so a password in the URL is ignored by it, but not by our output
    url = postgres_url.replace("://postgres@", "://postgres:pg-s3cret@")
    settings = EsbSettings(data_dir=tmp_path / "demo", database_url=url)
    engine = create_db_engine(url)
    upgrade(engine)
    CrmService(session_factory(engine)).record_cross_reference("erp", "customer", "CUST-KEPT", "0000100001")
    engine.dispose()

    kept_erp = tmp_path / "kept-erp.db"
    kept_erp.touch()
    check_crm_fits_new_erp(settings, kept_erp)  # the ERP's data exists: the spot check after its start decides
    with pytest.raises(DemoCannotRun) as raised:
        check_crm_fits_new_erp(settings, tmp_path / "demo" / "erp.db")
    message = str(raised.value)
    assert "pg-s3cret" not in message and "postgres:***@" in message
    assert "point database_url" in message and "empty database" in message and "\n" not in message


def test_the_running_erp_is_spot_checked_for_the_customers_the_crm_links_to(tmp_path: Path) -> None:
    with ErpServerProcess(db_path=tmp_path / "erp.db", seed=True) as erp:
        settings = EsbSettings(data_dir=tmp_path, erp={"url": erp.url}, worker={"material_sync_seconds": 0})  # type: ignore[arg-type]
        with Application(settings) as app:
            check_erp_knows_crm_links(app)  # no links: nothing to check
            app.crm.record_cross_reference("erp", "customer", "CUST-KEPT", "0000100001")
            with pytest.raises(
                DemoCannotRun, match="CUST-KEPT to ERP customer 0000100001, which the ERP does not know"
            ):
                check_erp_knows_crm_links(app)

            other = app.crm.create_customer(
                NewCustomer.model_validate(
                    {
                        "name": "Nordlicht Technik GmbH",
                        "addresses": [{"street": "Kai 1", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
                    }
                )
            )
            created = app.erp.create_customer(load_mapping("erp_customer").to_target(other))
            assert created.kunnr == "0000100001"  # the new ERP's first number, kept in the CRM for CUST-KEPT
            with pytest.raises(DemoCannotRun, match=f"which the ERP gives to {other.id}"):
                check_erp_knows_crm_links(app)
