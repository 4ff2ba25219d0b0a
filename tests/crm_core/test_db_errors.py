"""The CRM's edge: SQLAlchemy and pydantic errors leave CrmService as transient or permanent errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.errors import PermanentError, TransientError
from crm_core.db import create_db_engine, session_factory
from crm_core.db_errors import CrmDataRefused, CrmUnavailable, translate
from crm_core.errors import InvalidRequest
from crm_core.models import CustomerRow
from crm_core.services import CrmService


def test_a_database_without_the_crm_tables_is_unavailable_not_unexpected(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    crm = CrmService(session_factory(engine))
    with pytest.raises(TransientError) as caught:
        crm.get_customer("CUST-1")
    assert isinstance(caught.value, CrmUnavailable)
    assert (caught.value.system, caught.value.operation) == ("crm", "get_customer")
    assert "no such table: customers" in caught.value.message
    engine.dispose()


def test_a_refused_row_names_its_table_and_column_but_not_the_values(crm_sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError) as raised, crm_sessions() as session, session.begin():
        session.add(CustomerRow(id="CUST-SECRET", name=None, currency="EUR", credit_limit=0, payment_terms_days=30))
    error = translate(raised.value, "create_customer")
    assert isinstance(error, CrmDataRefused) and isinstance(error, PermanentError)
    assert (error.table, error.column) == ("customers", "name")
    assert "customers.name" in error.message and "CUST-SECRET" not in error.message


def test_a_stored_row_the_canonical_model_refuses_is_a_named_permanent_error(
    crm_sessions: sessionmaker[Session],
) -> None:
    with crm_sessions() as session, session.begin():
        session.add(
            CustomerRow(id="CUST-OLD", name="Old", currency="eur", credit_limit=Decimal(0), payment_terms_days=30)
        )
    with pytest.raises(InvalidRequest) as caught:
        CrmService(crm_sessions).get_customer("CUST-OLD")
    assert caught.value.field == "Customer.currency" and caught.value.operation == "get_customer"
