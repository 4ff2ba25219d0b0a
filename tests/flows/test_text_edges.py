"""Issue 6, cases 2 and 7, against the reference ERP in its own process (real SOAP over HTTP).

Case 2: a customer name XML 1.0 cannot carry (``"Nordlicht\\x0bTechnik GmbH"``), already in the CRM's
database from before the input rule: its order is rejected at its first delivery, naming
``customer.name`` and the value, with no ERP call.

Case 7: a material whose unit comes blank-padded (``<MEINS>KG </MEINS>``) syncs; a genuinely bad one
is kept aside in ``sync_rejects``, retried on each run, and holds back neither its page nor the cursor.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from structlog.testing import capture_logs

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from canonical_model.envelope import Envelope
from canonical_model.order import OrderRejected
from connectors.erp.client import ErpClient
from connectors.erp.settings import ErpSettings
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.models import AddressRow, CustomerRow
from crm_core.services import CrmService
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import CURSOR, sync_materials
from flows.order_to_erp import OrderToErp
from mappings import Catalog

SOURCE = "erp.materials"  # where sync_rejects says a material record came from
BAD_NAME = "Nordlicht\x0bTechnik GmbH"


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


def _settings(url: str) -> ErpSettings:
    return ErpSettings(url=url, retry_wait=0.01, retry_wait_max=0.05)


# -- case 2 ----------------------------------------------------------------------------------


def _legacy_customer(app: Application, customer_id: str) -> None:
    """A customer row written before the CRM refused control characters: straight into the tables."""
    with app.sessions() as session, session.begin():
        session.execute(
            insert(CustomerRow).values(
                id=customer_id,
                name=BAD_NAME,
                currency="EUR",
                credit_limit=Decimal("50000"),
                payment_terms_days=30,
            )
        )
        session.execute(
            insert(AddressRow).values(
                customer_id=customer_id,
                position=0,
                kind="billing",
                street="Hafenstr. 5",
                city="Kiel",
                postal_code="24103",
                country="DE",
            )
        )


def _wait_settled(app: Application, order_id: str, timeout: float = 30.0) -> OrderStatus:
    deadline = time.monotonic() + timeout
    while (status := app.crm.order_status(order_id)) == OrderStatus.PLACED and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def test_order_of_a_customer_whose_name_xml_cannot_carry_is_rejected_at_first_delivery(
    tmp_path: Path, erp: ErpServerProcess, unique_name: str
) -> None:
    settings = EsbSettings(
        data_dir=tmp_path,
        namespace=unique_name,
        transport="embedded",
        erp={"url": erp.url, "retry_wait": 0.01, "retry_wait_max": 0.05},  # type: ignore[arg-type]
        worker={"material_sync_seconds": 0},  # type: ignore[arg-type]
    )
    with Application(settings) as app:
        _legacy_customer(app, "CUST-NORDLICHT")
        order = app.crm.place_order(new_order("CUST-NORDLICHT", ("MAT-1001", "1", "H87", "1250.00")))
        erp.reset_stats()

        # The route's handler, once: it returns (the delivery is acked), with a named rejection.
        published: list[Envelope] = []
        handler = OrderToErp(app.crm, app.erp, lambda envelope: published.append(envelope))
        handler(Envelope.new("order.placed", order, source="/crm", subject=order.customer_id))
        [outcome] = published
        assert outcome.type == "order.rejected"
        rejected = OrderRejected.model_validate(outcome.data)
        assert rejected.field == "customer.name"
        assert rejected.code == "MAPPING"
        assert "customer.name='Nordlicht\\x0bTechnik GmbH'" in rejected.reason
        assert "XML 1.0 cannot carry" in rejected.reason

        # The same order through the worker on the embedded transport: rejected, nothing dead-lettered.
        with Worker(app):
            assert _wait_settled(app, order.id) == OrderStatus.REJECTED
        view = app.crm.get_order(order.id)
        assert view.rejection_code == "MAPPING"
        assert "customer.name='Nordlicht\\x0bTechnik GmbH'" in (view.rejection_reason or "")
        assert app.transport.message_count(app.topology.dead_letter_queue) == 0
        assert erp.calls("CreateCustomer") == 0 and erp.calls("CreateSalesOrder") == 0, "no ERP call"
        assert app.crm.cross_reference("erp", "customer", "CUST-NORDLICHT") is None


# -- case 7 ----------------------------------------------------------------------------------


def _erp_sql(erp: ErpServerProcess, statement: str, **params: Any) -> None:
    """Write the ERP's own database, as a record the ERP's API would not take (each with a new CHSEQ)."""
    with sqlite3.connect(erp.db_path, timeout=10) as conn:
        conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'CHSEQ'")
        (seq,) = conn.execute("SELECT value FROM counters WHERE name = 'CHSEQ'").fetchone()
        conn.execute(statement, {**params, "seq": seq})
    conn.close()


def _add_material(erp: ErpServerProcess, matnr: str, name: str, unit: str, cents: int) -> None:
    _erp_sql(
        erp,
        "INSERT INTO materials (matnr, maktx, meins, netpr, waers, lvorm, chseq)"
        " VALUES (:matnr, :maktx, :meins, :netpr, 'EUR', 0, :seq)",
        matnr=matnr,
        maktx=name,
        meins=unit,
        netpr=cents,
    )


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[CrmService]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    yield CrmService(session_factory(engine))
    engine.dispose()


def _catalog_knowing_carton(tmp_path: Path) -> Catalog:
    """The shipped mappings, with the unit map taught the ERP's new unit KAR (carton, UN/ECE CT)."""
    with as_file(files("mappings")) as shipped:
        shutil.copytree(shipped / "definitions", tmp_path / "definitions")
        shutil.copytree(shipped / "value_maps", tmp_path / "value_maps")
    unit_map = tmp_path / "value_maps" / "unit.yaml"
    unit_map.write_text(unit_map.read_text().replace("  PK: PAK", "  PK: PAK\n  CT: KAR"))
    return Catalog(tmp_path / "definitions", tmp_path / "value_maps")


def test_padded_codes_sync_and_a_bad_material_is_kept_aside_without_blocking(
    tmp_path: Path, erp: ErpServerProcess, crm: CrmService
) -> None:
    # The ERP's customising gains a unit the value map does not know, and a material uses it
    # (through SaveMaterial: the ERP accepts it); then, written in its database, a unit padded to
    # its field's width and a name longer than the catalogue's 40 characters. Good ones around them.
    _erp_sql(erp, "INSERT INTO units (msehi, mseht) VALUES ('KAR', 'carton')")
    with ErpClient(_settings(erp.url)) as client:
        client.save_material(
            {
                "MATNR": "MAT-7001",
                "MAKTX": "Gasket set (carton)",
                "MEINS": "KAR",
                "NETPR": Decimal("30.00"),
                "WAERS": "EUR",
            }
        )
        _add_material(erp, "MAT-7002", "Copper granulate", "KG ", 1175)
        _add_material(erp, "MAT-7003", "Stainless steel hex bolt M12x80 DIN 933 A2", "ST", 45)
        _add_material(erp, "MAT-7004", "Cable tie 200 mm", "PAK", 399)
        last_seq = client.materials_changed_since(0, max_rows=1000).last_seq

        # 14 materials in pages of 4: the bad ones sit inside pages, with good ones after them.
        with capture_logs() as logs:
            first = sync_materials(crm, client, page_size=4)
        assert (first.written, first.rejected, first.recovered) == (12, 2, 0)
        products = {p.id: p for p in crm.list_products()}
        assert products["MAT-7002"].unit == "KGM", "the padded unit is the code KG"
        assert "MAT-7004" in products and "MAT-1010" in products, "the rest of the page and later pages synced"
        assert crm.cursor(CURSOR) == last_seq, "the cursor moved past the bad records"

        rejects = {r.record_key: r for r in crm.sync_rejects(SOURCE)}
        assert set(rejects) == {"MAT-7001", "MAT-7003"}
        carton = rejects["MAT-7001"]
        assert (carton.source, carton.attempts) == ("erp.materials", 1)
        assert "unit" in carton.reason and "'KAR'" in carton.reason and "MEINS" in carton.reason
        assert carton.record is not None and carton.record["MEINS"] == "KAR" and carton.record["NETPR"] == "30.00"
        assert "name" in rejects["MAT-7003"].reason and "40 characters" in rejects["MAT-7003"].reason
        warned = {e["key"]: e for e in logs if e["log_level"] == "warning" and e.get("source") == SOURCE}
        assert set(warned) == {"MAT-7001", "MAT-7003"} and "'KAR'" in warned["MAT-7001"]["reason"]

        # The next run, nothing changed in the ERP: the rejects are tried again from what was kept.
        again = sync_materials(crm, client, page_size=4)
        assert (again.written, again.rejected, again.recovered) == (0, 2, 0)
        assert {r.record_key: r.attempts for r in crm.sync_rejects(SOURCE)} == {"MAT-7001": 2, "MAT-7003": 2}

        # The ERP fixes the long name: it comes back through the change feed and syncs.
        client.save_material(
            {
                "MATNR": "MAT-7003",
                "MAKTX": "Hex bolt M12x80 A2",
                "MEINS": "ST",
                "NETPR": Decimal("0.45"),
                "WAERS": "EUR",
            }
        )
        fixed = sync_materials(crm, client, page_size=4)
        assert (fixed.written, fixed.rejected) == (1, 1)
        assert [r.record_key for r in crm.sync_rejects(SOURCE)] == ["MAT-7001"]

        # Our side learns the unit: the kept record maps now, though the ERP's feed has long moved on.
        learned = sync_materials(
            crm, client, page_size=4, mapping=_catalog_knowing_carton(tmp_path).mapping("erp_material")
        )
        assert (learned.written, learned.rejected, learned.recovered) == (1, 0, 1)
        assert crm.sync_rejects(SOURCE) == []
        products = {p.id: p for p in crm.list_products()}
        assert products["MAT-7001"].unit == "CT" and products["MAT-7003"].name == "Hex bolt M12x80 A2"
