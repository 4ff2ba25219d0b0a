"""Records a pull could not take: kept aside with source, key, reason and record; attempts counted."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from canonical_model.product import Product
from crm_core.schemas import NewSyncReject
from crm_core.services import CrmService


def _reject(key: str, reason: str) -> NewSyncReject:
    return NewSyncReject(record_key=key, reason=reason, record={"MATNR": key, "MEINS": "KAR", "NETPR": "30.00"})


def test_a_reject_is_kept_counted_and_removed_when_its_record_syncs(crm_sessions: sessionmaker[Session]) -> None:
    crm = CrmService(crm_sessions)
    good = Product(id="MAT-1", name="Pump", unit="H87", list_price=Decimal("10.00"))
    assert crm.apply_sync_page("erp.materials", [good], [_reject("MAT-2", "unit 'KAR' unknown")], cursor=17) == 1
    assert crm.cursor("erp.materials") == 17, "the cursor moves past the rejected record"
    [kept] = crm.sync_rejects("erp.materials")
    assert (kept.source, kept.record_key, kept.reason, kept.attempts) == (
        "erp.materials",
        "MAT-2",
        "unit 'KAR' unknown",
        1,
    )
    assert kept.record == {"MATNR": "MAT-2", "MEINS": "KAR", "NETPR": "30.00"}

    crm.apply_sync_page("erp.materials", [], [_reject("MAT-2", "still unknown")])
    [again] = crm.sync_rejects()
    assert (again.attempts, again.reason, again.first_seen) == (2, "still unknown", kept.first_seen)
    assert again.last_seen >= kept.last_seen
    assert crm.cursor("erp.materials") == 17, "no cursor given, none moved"
    assert crm.sync_rejects("erp.customers") == []

    fixed = Product(id="MAT-2", name="Gasket set", unit="H87", list_price=Decimal("30.00"))
    crm.apply_sync_page("erp.materials", [fixed], [])
    assert crm.sync_rejects() == []
    assert [p.id for p in crm.list_products()] == ["MAT-1", "MAT-2"]
