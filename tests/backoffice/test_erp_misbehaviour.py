"""The reference ERP misbehaving on purpose (issue 8): held and dropped requests, malformed answers,
answers after the commit and late, poison requests; each kind counted. Against the real server process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from backoffice.erp.process import ErpServerError, ErpServerProcess

ENVELOPE = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:erp="urn:crm-esb:erp:v1">'
    "<s:Body>{}</s:Body></s:Envelope>"
)
NO_FAULTS: dict[str, Any] = {
    "fault_rate": 0.0,
    "timeout_rate": 0.0,
    "malformed_rate": 0.0,
    "late_answer_rate": 0.0,
    "fault_keys": [],
    "fault_operations": [],
}


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    # two threads: at most one request is held by an injected timeout, the other keeps serving
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", threads=2) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(erp: ErpServerProcess) -> Iterator[None]:
    erp.set_faults(**NO_FAULTS)
    erp.reset_stats()
    yield
    erp.set_faults(**NO_FAULTS)


def _create(extref: str) -> str:
    customer = f"<CUSTOMER><EXTREF>{extref}</EXTREF><NAME1>Test GmbH</NAME1><LAND1>DEU</LAND1></CUSTOMER>"
    return ENVELOPE.format(f"<erp:CreateCustomer>{customer}</erp:CreateCustomer>")


def _post(erp: ErpServerProcess, body: str, *, timeout: float | tuple[float, float] = 10) -> requests.Response:
    return requests.post(erp.url, data=body.encode(), headers={"Content-Type": "text/xml"}, timeout=timeout)


def _created(erp: ErpServerProcess, extref: str) -> bool:
    """Create ``extref`` with no misbehaviour: True if the ERP did not have it (nothing was committed before)."""
    answer = _post(erp, _create(extref))
    assert answer.status_code == 200, answer.text
    return "<CREATED>true</CREATED>" in answer.text


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"timeout_rate": 1.5}, "timeout_rate must be between"),
        ({"malformed_rate": -0.1}, "malformed_rate must be between"),
        ({"late_answer_rate": "0.5"}, "late_answer_rate has the wrong type"),
        ({"timeout_ms": 0}, "timeout_ms must be between 1 and 300000"),
        ({"timeout_ms": 300_001}, "timeout_ms must be between"),
        ({"late_answer_ms": -1}, "late_answer_ms must be between 0 and 300000"),
        ({"latency_ms": 10**9}, "latency_ms must be at most"),
        ({"fault_keys": "SO-1"}, "fault_keys has the wrong type"),
        ({"fault_keys": [1]}, "fault_keys has the wrong type"),
        ({"fault_keys": [""]}, "each key is a string of 1 to 200"),
        ({"fault_keys": ["x" * 201]}, "each key is a string of 1 to 200"),
        ({"fault_keys": [f"k{i}" for i in range(101)]}, "at most 100 keys"),
        ({"timeout_seconds": 1}, "unknown settings: timeout_seconds"),
        ({"fault_operations": ["CreateCustomr"]}, "fault_operations: unknown operations: CreateCustomr"),
        ({"fault_operations": "UpdateCustomer"}, "fault_operations has the wrong type"),
        ({"fault_operations": ["UpdateCustomer"] * 31}, "at most 30 operations"),
    ],
)
def test_settings_are_bounded_and_checked(erp: ErpServerProcess, changes: dict[str, Any], says: str) -> None:
    before = erp.faults()
    refused = requests.post(erp.base_url + "/admin/faults", json=changes, timeout=5)
    assert refused.status_code == 400
    assert says in refused.json()["error"]
    assert erp.faults() == before


def test_set_faults_reports_a_refusal(erp: ErpServerProcess) -> None:
    with pytest.raises(ErpServerError, match=r"HTTP 400.*timeout_rate must be between"):
        erp.set_faults(timeout_rate=2.0)


def test_a_timeout_holds_the_request_then_closes_without_an_answer_and_commits_nothing(
    erp: ErpServerProcess,
) -> None:
    erp.set_faults(timeout_rate=1.0, timeout_ms=3000)
    outcome: dict[str, BaseException | requests.Response] = {}

    def held() -> None:
        try:
            outcome["held"] = _post(erp, _create("HELD-1"), timeout=30)
        except requests.RequestException as exc:
            outcome["held"] = exc

    caller = threading.Thread(target=held)
    caller.start()
    while erp.injected()["timeout"] < 1:  # the ERP holds it now
        threading.Event().wait(0.02)
    # the other thread is free: a second request (held requests are capped at half the threads) is served
    assert _created(erp, "SERVED-WHILE-HELD")
    assert caller.is_alive(), "the held request was answered while the other one was served"
    caller.join(30)
    assert isinstance(outcome["held"], requests.ConnectionError), outcome["held"]
    assert erp.injected()["timeout"] == 1
    erp.set_faults(timeout_rate=0.0)
    assert _created(erp, "HELD-1"), "a request dropped by an injected timeout must commit nothing"


def test_a_malformed_answer_is_200_without_well_formed_xml_and_commits_nothing(erp: ErpServerProcess) -> None:
    erp.set_faults(malformed_rate=1.0)
    answer = _post(erp, _create("MALFORMED-1"))
    assert answer.status_code == 200
    assert answer.content.startswith(b"<?xml")
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(answer.content)
    assert erp.injected()["malformed"] == 1
    erp.set_faults(malformed_rate=0.0)
    assert _created(erp, "MALFORMED-1")


def test_a_late_answer_commits_first_and_answers_after_the_clients_deadline(erp: ErpServerProcess) -> None:
    erp.set_faults(late_answer_rate=1.0, late_answer_ms=2000)
    with pytest.raises(requests.ReadTimeout):
        _post(erp, _create("LATE-1"), timeout=(5, 0.5))
    assert erp.injected()["late"] == 1
    # a read is never answered late
    assert _post(erp, ENVELOPE.format("<erp:ListMaterials/>")).status_code == 200
    assert erp.injected()["late"] == 1
    erp.set_faults(late_answer_rate=0.0)
    assert not _created(erp, "LATE-1"), "the late answer's customer must have been committed"


def test_a_poison_request_gets_the_same_server_fault_on_every_try_and_others_pass(erp: ErpServerProcess) -> None:
    erp.set_faults(fault_keys=["POISON-7"])
    for _ in range(3):
        answer = _post(erp, _create("POISON-7"))
        assert answer.status_code == 500
        assert "<faultcode>soap:Server</faultcode>" in answer.text
        assert "INJECTED_FAULT" in answer.text and "POISON-7" in answer.text
    assert _created(erp, "HEALTHY-7")
    assert erp.injected() == {"fault": 0, "timeout": 0, "malformed": 0, "late": 0, "poison": 3}
    erp.set_faults(fault_keys=[])
    assert _created(erp, "POISON-7"), "a poison request must commit nothing"


def test_every_injected_kind_is_counted_and_reset(erp: ErpServerProcess) -> None:
    erp.set_faults(fault_rate=1.0)
    assert _post(erp, _create("FAULT-1")).status_code == 500
    assert erp.injected()["fault"] == 1
    assert erp.faults()["fault_rate"] == 1.0
    erp.reset_stats()
    assert erp.injected() == {"fault": 0, "timeout": 0, "malformed": 0, "late": 0, "poison": 0}


def test_the_erp_serves_again_after_the_misbehaviour_stops(erp: ErpServerProcess, tmp_path: Path) -> None:
    erp.set_faults(timeout_rate=1.0, timeout_ms=1, malformed_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        _post(erp, _create("DROPPED-2"))
    erp.set_faults(timeout_rate=0.0, malformed_rate=0.0)
    assert _created(erp, "DROPPED-2")


def test_the_rates_apply_to_the_chosen_operations_only(erp: ErpServerProcess) -> None:
    erp.set_faults(fault_rate=1.0, malformed_rate=0.0, fault_operations=["UpdateCustomer"])
    assert _created(erp, "CHOSEN-1"), "CreateCustomer is not among the chosen operations"
    kunnr = _post(erp, _create("CHOSEN-1")).text.split("<KUNNR>")[1].split("</KUNNR>")[0]
    customer = f"<CUSTOMER><KUNNR>{kunnr}</KUNNR><NAME1>Chosen</NAME1><LAND1>DEU</LAND1></CUSTOMER>"
    update = ENVELOPE.format(f"<erp:UpdateCustomer>{customer}</erp:UpdateCustomer>")
    assert _post(erp, update).status_code == 500
    assert erp.injected()["fault"] == 1
    erp.set_faults(fault_operations=[])
    assert _post(erp, _create("CHOSEN-2")).status_code == 500  # every operation again
