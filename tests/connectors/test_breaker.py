"""The circuit breaker per back office (connectors.breaker): an outage opens it, a poison request never does."""

from __future__ import annotations

import threading

import pytest

from canonical_model.errors import BackOfficeUnavailable, BusinessRejection
from connectors.breaker import Breakers, BreakerState, CircuitBreaker
from crm_core.db_errors import CrmUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ERP_DOWN = BackOfficeUnavailable("HTTP 503", system="erp")
NOT_RUNNING = threading.Event()


def breaker(clock: Clock, failures: int = 3, interval: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker("erp", failures=failures, interval=interval, clock=clock)


def fail(b: CircuitBreaker, error: BaseException = ERP_DOWN) -> None:
    assert b.wait(NOT_RUNNING)
    b.record(error)


def test_consecutive_failures_open_it() -> None:
    b = breaker(Clock())
    for _ in range(2):
        fail(b)
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN


def test_a_poison_request_between_successes_never_opens_it() -> None:
    """The same request failing on every try while the others succeed is no outage."""
    b = breaker(Clock(), failures=2)
    for _ in range(50):
        fail(b)
        assert b.wait(NOT_RUNNING)
        b.record(None)
    assert b.state is BreakerState.CLOSED


def test_business_refusals_are_answers_and_other_systems_say_nothing() -> None:
    b = breaker(Clock(), failures=2)
    fail(b)
    fail(b, BusinessRejection("credit block", code="CREDIT_BLOCK", system="erp"))
    fail(b)
    assert b.state is BreakerState.CLOSED, "the refusal reset the count"
    fail(b, CrmUnavailable("locked", system="crm"))
    assert b.state is BreakerState.CLOSED, "a CRM error does not count for the ERP"
    fail(b)
    assert b.state is BreakerState.OPEN, "nor does it reset: two ERP failures in a row around it"


def test_while_open_one_probe_per_interval() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, interval=30.0)
    fail(b)
    stop = threading.Event()
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(b.wait(stop)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive(), "an open breaker holds the route"
    clock.now += 30
    waiter.join(2)
    assert waited == [True] and b.state is BreakerState.HALF_OPEN and b.probes == 1
    # a second delivery waits for the probe's outcome
    second = threading.Thread(target=lambda: waited.append(b.wait(stop)))
    second.start()
    second.join(0.3)
    assert second.is_alive(), "one probe at a time"
    b.record(ERP_DOWN)
    assert b.state is BreakerState.OPEN
    second.join(0.3)
    assert second.is_alive(), "a failed probe opens it for another interval"
    clock.now += 30
    second.join(2)
    assert waited == [True, True] and b.probes == 2
    b.record(None)
    assert b.state is BreakerState.CLOSED


def test_stop_releases_a_waiting_route() -> None:
    b = breaker(Clock(), failures=1)
    fail(b)
    stop = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(b.wait(stop)))
    waiter.start()
    stop.set()
    waiter.join(2)
    assert result == [False]


def test_one_breaker_per_system_shared_by_routes() -> None:
    breakers = Breakers(failures=1, interval=5)
    assert breakers.of("erp") is breakers.of("erp")
    assert breakers.gate((), threading.Event()) is None
    gate = breakers.gate(("erp",), threading.Event())
    assert gate is not None and gate.enter()
    gate.leave(ERP_DOWN)
    assert breakers.of("erp").state is BreakerState.OPEN


@pytest.mark.parametrize(("failures", "interval"), [(0, 1.0), (1, 0.0)])
def test_settings_are_checked(failures: int, interval: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("erp", failures=failures, interval=interval)


def test_a_poison_request_retried_alone_never_opens_it() -> None:
    """With no other traffic in between (an idle route, or its retries behind the backlog), the poison
    message's tries are consecutive failures: counted once per message, they never open it."""
    b = breaker(Clock(), failures=2)
    for _ in range(6):
        assert b.wait(NOT_RUNNING)
        b.record(ERP_DOWN, "poison-1")
    assert b.state is BreakerState.CLOSED
    assert b.wait(NOT_RUNNING)
    b.record(ERP_DOWN, "other-1")
    assert b.state is BreakerState.OPEN, "a second message failing too is an outage"
