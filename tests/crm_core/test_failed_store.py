"""The failed-message store: one row per (message id, queue), repeat failures counted, causes grouped,
every value bounded (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from canonical_model.truncation import TRUNCATED
from crm_core.failed_store import (
    BODY_MAX,
    FailureFilter,
    FailureStatus,
    NewFailure,
    cause_of,
    get_failure,
    list_failures,
    list_groups,
    normalise_reason,
    record_action,
    record_failure,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _failure(message_id: str = "m-1", *, reason: str = "erp.CreateCustomer: ERP answered HTTP 401", **more: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "message_id": message_id,
        "queue": "esb.erp.order_placed.2",
        "route": "erp.order_placed",
        "event_type": "order.placed",
        "reason": f"{reason} [in esb.erp.order_placed.2]",
        "exception_type": "RequestRejected",
        "stack": None,
        "by_broker": False,
        "mark": "esb:1",
        "failed_at": T0,
        "headers": {"x-esb-error-reason": reason},
        "body": b'{"id": "m-1"}',
        "customer_id": "C-1",
        "order_id": "SO-1",
    }
    values.update(more)
    return NewFailure(**values)  # type: ignore[arg-type]


def test_a_repeat_dead_lettering_counts_an_attempt_and_a_redelivered_one_changes_nothing(
    crm_sessions: sessionmaker[Session],
) -> None:
    first, created = record_failure(crm_sessions, _failure())
    assert created
    assert record_failure(crm_sessions, _failure()) == (first, False), "the same dead letter again (same mark)"
    record_action(
        crm_sessions, [first], action="replay", actor="ops", result="ok", detail="x", status=FailureStatus.REPLAYED
    )
    later = T0 + timedelta(minutes=5)
    assert record_failure(crm_sessions, _failure(mark="esb:2", failed_at=later)) == (first, True)
    stored = get_failure(crm_sessions, first)
    assert (stored.attempts, stored.first_failed_at, stored.last_failed_at) == (2, T0, later)
    assert stored.status == FailureStatus.FAILED, "a replay that failed again is open again"
    # another queue is another failure of the same message
    other, created = record_failure(crm_sessions, _failure(queue="esb.crm.order_outcome"))
    assert created and other != first
    assert len(list_failures(crm_sessions, FailureFilter())) == 2


def test_failures_are_grouped_by_exception_type_normalised_reason_and_route(
    crm_sessions: sessionmaker[Session],
) -> None:
    for index in range(3):
        record_failure(crm_sessions, _failure(f"m-{index}", order_id=f"SO-{index}"))
    record_failure(crm_sessions, _failure("m-9", reason="erp.CreateCustomer: ERP answered HTTP 503"))
    record_failure(crm_sessions, _failure("m-8", route="erp.customer_sync"))
    groups = list_groups(crm_sessions, FailureFilter())
    assert [g.count for g in groups] == [3, 1, 1]
    assert groups[0].title == "erp.order_placed: RequestRejected: erp.CreateCustomer: ERP answered HTTP 401"
    only = list_failures(crm_sessions, FailureFilter(group=groups[0].key, customer_id="C-1"))
    assert {f.order_id for f in only} == {"SO-0", "SO-1", "SO-2"}
    assert list_failures(crm_sessions, FailureFilter(since=T0 + timedelta(seconds=1))) == []


def test_ids_amounts_and_where_it_died_do_not_split_a_cause() -> None:
    a = "order SO-DEEC43C93F: total 1250.00 differs from 'x' (id 9df0d72c-71cf-4ac5-9ccf-414469f7c9d4) [in q.1]"
    b = "order SO-AAAA11111B: total 99.50 differs from 'yy' (id 1599d60d-332e-4ac5-b8b7-021ccab15af7) [in q.3]"
    assert normalise_reason(a) == normalise_reason(b) == "order <id>: total <n> differs from <value> (id <id>)"
    assert cause_of("E", a, "r") == cause_of("E", b, "r") != cause_of("E", a, "other")
    assert normalise_reason("HTTP 401") != normalise_reason("HTTP 503")


def test_every_value_is_bounded(crm_sessions: sessionmaker[Session]) -> None:
    huge = _failure(
        "m" * 500,
        reason="r" * 100_000,
        exception_type="E" * 1000,
        stack="s" * 100_000,
        headers={f"h{i}": "v" * 10_000 for i in range(100)},
        body=b"b" * (BODY_MAX + 1),
        customer_id="c" * 100,
    )
    stored = get_failure(crm_sessions, record_failure(crm_sessions, replace(huge))[0])
    assert len(stored.message_id) == 64 and len(stored.reason) == 1000 and stored.reason.endswith(TRUNCATED)
    assert len(stored.exception_type) == 120 and len(stored.stack or "") == 4000
    assert len(stored.headers) == 32 and all(len(str(v)) <= 500 for v in stored.headers.values())
    assert len(stored.body) == BODY_MAX and stored.body_truncated
    assert stored.customer_id is not None and len(stored.customer_id) == 40
