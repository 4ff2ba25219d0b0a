"""Case 9 of issue 6 in the CRM: a cross-reference that contradicts a kept one is a named, permanent conflict."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.errors import PermanentError
from crm_core.errors import CrmError, CrossReferenceConflict
from crm_core.services import CrmService


def test_a_reused_external_id_is_a_conflict_naming_both_crm_ids(crm_sessions: sessionmaker[Session]) -> None:
    # The CRM kept its links; the ERP was reset and gives its first number again, to another customer.
    crm = CrmService(crm_sessions)
    crm.record_cross_reference("erp", "customer", "CUST-KEPT", "0000100001")
    with pytest.raises(CrossReferenceConflict) as raised:
        crm.record_cross_reference("erp", "customer", "CUST-NEW", "0000100001")
    conflict = raised.value
    assert isinstance(conflict, CrmError) and isinstance(conflict, PermanentError)
    assert (conflict.external_system, conflict.entity, conflict.crm_id, conflict.external_id) == (
        "erp",
        "customer",
        "CUST-NEW",
        "0000100001",
    )
    assert (conflict.linked_crm_id, conflict.linked_external_id) == ("CUST-KEPT", "0000100001")
    assert "CUST-NEW" in str(conflict) and "CUST-KEPT" in str(conflict) and "0000100001" in str(conflict)
    assert "stale" in str(conflict)
    # nothing was changed: which link is right is the operator's decision
    assert crm.cross_reference("erp", "customer", "CUST-KEPT") == "0000100001"
    assert crm.cross_reference("erp", "customer", "CUST-NEW") is None


def test_a_second_external_id_for_a_linked_crm_id_is_a_conflict_naming_both(
    crm_sessions: sessionmaker[Session],
) -> None:
    crm = CrmService(crm_sessions)
    crm.record_cross_reference("erp", "customer", "CUST-1", "0000100001")
    crm.record_cross_reference("erp", "customer", "CUST-1", "0000100001")  # the same pair again: fine
    with pytest.raises(CrossReferenceConflict) as raised:
        crm.record_cross_reference("erp", "customer", "CUST-1", "0000100007")
    assert (raised.value.crm_id, raised.value.linked_external_id, raised.value.external_id) == (
        "CUST-1",
        "0000100001",
        "0000100007",
    )
    # another entity or system has its own numbering
    crm.record_cross_reference("erp", "vendor", "CUST-2", "0000100001")
    crm.record_cross_reference("scm", "customer", "CUST-2", "0000100001")
    assert crm.cross_references("erp") == [("customer", "CUST-1", "0000100001"), ("vendor", "CUST-2", "0000100001")]
