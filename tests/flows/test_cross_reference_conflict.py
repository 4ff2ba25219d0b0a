"""Case 9 of issue 6 through the order route: CRM kept, ERP reset (its customer numbers start again).

The first delivery of the new customer's order is dead-lettered with the named conflict; it is not
"unexpected", requeued and retried up to the delivery limit.
"""

from __future__ import annotations

from pathlib import Path

from backoffice.erp.process import ErpServerProcess
from connectors.base import HEADER_ERROR_REASON, HEADER_ERROR_TYPE
from connectors.consumer import settle
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order
from tests.queues import get_any


def test_an_order_for_a_customer_the_reset_erp_numbers_like_a_kept_one_is_dead_lettered_at_once(
    tmp_path: Path,
) -> None:
    with ErpServerProcess(db_path=tmp_path / "erp.db", seed=True) as erp:
        settings = EsbSettings(data_dir=tmp_path, erp={"url": erp.url}, worker={"material_sync_seconds": 0})  # type: ignore[arg-type]
        with Application(settings) as app:
            # what the CRM kept from the ERP before its reset: the ERP's first customer number
            app.crm.record_cross_reference("erp", "customer", "CUST-KEPT", "0000100001")
            customer = app.crm.create_customer(
                NewCustomer.model_validate(
                    {
                        "name": "Nordlicht Technik GmbH",
                        "credit_limit": "10000",
                        "addresses": [{"street": "Kai 1", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
                    }
                )
            )
            app.crm.place_order(new_order(customer.id, ("MAT-9999", "1", "H87", "10.00")))
            app.outbox_relay().relay_once()
            route = next(r for r in app.routes if r.name == "erp.order_placed")
            delivery = get_any(app.transport, app.topology, app.queue_of(route))  # the one shard that has it
            assert delivery is not None and delivery.previous_deliveries == 0

            outcome = settle(delivery, route.handler)

            assert outcome == "dead_lettered"
            dead = app.transport.get(app.topology.dead_letter_queue)
            assert dead is not None
            reason = str(dead.headers[HEADER_ERROR_REASON])
            assert dead.headers[HEADER_ERROR_TYPE] == "CrossReferenceConflict"
            assert all(part in reason for part in (customer.id, "CUST-KEPT", "0000100001")), reason
            dead.ack()
            assert app.crm.cross_reference("erp", "customer", "CUST-KEPT") == "0000100001"
