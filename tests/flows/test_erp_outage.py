"""A back office that is down for a few seconds delays orders; it does not dead-letter them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import sync_materials


@pytest.fixture
def erp_server(tmp_path: Path) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(db_path=tmp_path / "erp.db", seed=True) as server:
        yield server


def test_orders_wait_out_an_erp_outage(tmp_path: Path, erp_server: ErpServerProcess, unique_name: str) -> None:
    settings = EsbSettings(
        data_dir=tmp_path,
        namespace=unique_name,
        erp={"url": erp_server.url},  # type: ignore[arg-type]
        worker={"material_sync_seconds": 0},  # type: ignore[arg-type]
    )
    with Application(settings) as app:
        sync_materials(app.crm, app.erp)
        customer = app.crm.create_customer(
            NewCustomer.model_validate(
                {
                    "name": "Outage Tester GmbH",
                    "credit_limit": "10000",
                    "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}],
                }
            )
        )
        erp_server.set_faults(outage=True)
        order = app.crm.place_order(new_order(customer.id, ("MAT-1002", "2", None, None)))
        with Worker(app):
            deadline = time.monotonic() + 10
            while erp_server.stats()["operations"].get("CreateCustomer", 0) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert erp_server.stats()["operations"].get("CreateCustomer", 0) >= 2, "the route kept trying"
            time.sleep(3)  # longer than the delivery limit would last if failures were requeued at once
            assert app.crm.get_order(order.id).status == OrderStatus.PLACED
            erp_server.set_faults(outage=False)
            deadline = time.monotonic() + 30
            while app.crm.get_order(order.id).status == OrderStatus.PLACED and time.monotonic() < deadline:
                time.sleep(0.1)
        view = app.crm.get_order(order.id)
        assert view.status == OrderStatus.CONFIRMED, view
        assert app.transport.message_count(app.topology.dead_letter_queue) == 0
