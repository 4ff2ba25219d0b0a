"""How the ERP connector sees each kind of misbehaviour the reference ERP injects (issue 8): all of them
transient, so a route retries them; a late answer's change is committed and a repeat with the same
idempotency key applies nothing twice. The real ERP in its own process, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model.errors import TransientError
from connectors.erp import ErpClient, ErpSettings

CUSTOMER = {"NAME1": "Injected GmbH", "LAND1": "DEU"}


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db") as server:
        yield server


@pytest.fixture
def client(erp: ErpServerProcess) -> Iterator[ErpClient]:
    """One attempt per call, a 1 s deadline: what the ERP injects reaches the caller as it is."""
    settings = ErpSettings(url=erp.url, retries=1, call_deadline=1.0, operation_timeout=1.0, retry_budget=2.0)
    with ErpClient(settings) as c:
        c.list_materials()  # the WSDL is read before anything is injected
        yield c
    erp.set_faults(fault_rate=0.0, timeout_rate=0.0, malformed_rate=0.0, late_answer_rate=0.0, fault_keys=[])


@pytest.mark.parametrize(
    ("injected", "kind"),
    [
        ({"timeout_rate": 1.0, "timeout_ms": 300}, "timeout"),
        ({"timeout_rate": 1.0, "timeout_ms": 1500}, "timeout"),
        ({"malformed_rate": 1.0}, "malformed"),
        ({"fault_rate": 1.0}, "fault"),
        ({"fault_keys": ["POISON-C"]}, "poison"),
        ({"late_answer_rate": 1.0, "late_answer_ms": 1500}, "late"),
    ],
    ids=["dropped", "held-past-deadline", "malformed", "fault", "poison", "late"],
)
def test_each_injected_kind_is_transient(
    erp: ErpServerProcess, client: ErpClient, injected: dict[str, Any], kind: str
) -> None:
    erp.reset_stats()
    erp.set_faults(**injected)
    extref = f"POISON-C-{kind}" if kind == "poison" else f"INJ-{kind}-{injected.get('timeout_ms', 0)}"
    with pytest.raises(TransientError):
        client.create_customer({**CUSTOMER, "EXTREF": extref}, idempotency_key=f"k-{extref}")
    assert erp.injected()[kind] == 1
    erp.set_faults(fault_rate=0.0, timeout_rate=0.0, malformed_rate=0.0, late_answer_rate=0.0, fault_keys=[])
    created = client.create_customer({**CUSTOMER, "EXTREF": extref}, idempotency_key=f"k-{extref}")
    # only the late answer committed before the caller gave up; the repeat adds nothing
    assert created.created is (kind != "late")
    assert [c["message_id"] for c in erp.customer_changes(created.kunnr)] == [f"k-{extref}"]


def test_an_update_answered_late_is_applied_once_when_repeated(erp: ErpServerProcess, client: ErpClient) -> None:
    kunnr = client.create_customer({**CUSTOMER, "EXTREF": "LATE-U", "VERSION": 1}).kunnr
    erp.set_faults(late_answer_rate=1.0, late_answer_ms=1500)
    change = {**CUSTOMER, "KUNNR": kunnr, "NAME1": "Late Two GmbH"}
    with pytest.raises(TransientError):
        client.update_customer(change, idempotency_key="late-2", version=2)
    erp.set_faults(late_answer_rate=0.0)
    answer = client.update_customer(change, idempotency_key="late-2", version=2)
    assert (answer["NAME1"], answer["VERSION"]) == ("Late Two GmbH", 2)
    assert [(c["version"], c["message_id"]) for c in erp.customer_changes(kunnr)] == [(1, None), (2, "late-2")]
