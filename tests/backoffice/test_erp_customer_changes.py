"""The reference ERP's customer change record: VERSION and IDEMPOTENCY_KEY on CreateCustomer and
UpdateCustomer, a key applied once, nothing refused for being older (issue 8). Real server process."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from backoffice.erp.process import ErpServerProcess

ENVELOPE = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:erp="urn:crm-esb:erp:v1">'
    "<s:Body>{}</s:Body></s:Envelope>"
)


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db") as server:
        yield server


def _call(erp: ErpServerProcess, operation: str, inner: str, *, status: int = 200) -> str:
    body = ENVELOPE.format(f"<erp:{operation}>{inner}</erp:{operation}>")
    answer = requests.post(erp.url, data=body.encode(), headers={"Content-Type": "text/xml"}, timeout=10)
    assert answer.status_code == status, answer.text
    return answer.text


def _customer(name: str, *, extref: str | None = None, kunnr: str | None = None, version: int | None = None) -> str:
    parts = [f"<KUNNR>{kunnr}</KUNNR>" if kunnr else "", f"<EXTREF>{extref}</EXTREF>" if extref else ""]
    parts += [f"<NAME1>{name}</NAME1><LAND1>DEU</LAND1>", f"<VERSION>{version}</VERSION>" if version else ""]
    return f"<CUSTOMER>{''.join(parts)}</CUSTOMER>"


def _key(key: str) -> str:
    return f"<IDEMPOTENCY_KEY>{key}</IDEMPOTENCY_KEY>"


def _kunnr(answer: str) -> str:
    return answer.split("<KUNNR>")[1].split("</KUNNR>")[0]


def _seen(erp: ErpServerProcess, kunnr: str) -> list[tuple[int | None, str | None, str]]:
    return [(c["version"], c["message_id"], c["operation"]) for c in erp.customer_changes(kunnr)]


def test_create_and_updates_are_recorded_in_the_order_applied_with_version_and_key(erp: ErpServerProcess) -> None:
    kunnr = _kunnr(_call(erp, "CreateCustomer", _key("m-1") + _customer("V1 GmbH", extref="C-1", version=1)))
    _call(erp, "UpdateCustomer", _key("m-2") + _customer("V2 GmbH", kunnr=kunnr, version=2))
    answer = _call(erp, "UpdateCustomer", _key("m-3") + _customer("V3 GmbH", kunnr=kunnr, version=3))
    assert "<VERSION>3</VERSION>" in answer and "<NAME1>V3 GmbH</NAME1>" in answer
    assert _seen(erp, kunnr) == [
        (1, "m-1", "CreateCustomer"),
        (2, "m-2", "UpdateCustomer"),
        (3, "m-3", "UpdateCustomer"),
    ]
    changes = erp.customer_changes(kunnr)
    assert [c["seq"] for c in changes] == sorted(c["seq"] for c in changes)
    assert all(c["kunnr"] == kunnr and c["applied_at"] for c in changes)
    assert "<VERSION>3</VERSION>" in _call(erp, "GetCustomer", f"<KUNNR>{kunnr}</KUNNR>")


def test_a_replayed_key_is_applied_once_and_answers_the_current_record(erp: ErpServerProcess) -> None:
    kunnr = _kunnr(_call(erp, "CreateCustomer", _customer("Replay GmbH", extref="C-2", version=1)))
    _call(erp, "UpdateCustomer", _key("r-2") + _customer("Replay Two", kunnr=kunnr, version=2))
    _call(erp, "UpdateCustomer", _key("r-3") + _customer("Replay Three", kunnr=kunnr, version=3))
    again = _call(erp, "UpdateCustomer", _key("r-2") + _customer("Replay Two", kunnr=kunnr, version=2))
    assert "<NAME1>Replay Three</NAME1>" in again and "<VERSION>3</VERSION>" in again
    applied = [(1, None, "CreateCustomer"), (2, "r-2", "UpdateCustomer"), (3, "r-3", "UpdateCustomer")]
    assert _seen(erp, kunnr) == applied
    # CreateCustomer replayed by its key or by its EXTREF records nothing either
    _call(erp, "CreateCustomer", _key("r-2") + _customer("Replay GmbH", extref="C-2", version=1))
    assert "<CREATED>false</CREATED>" in _call(erp, "CreateCustomer", _customer("Replay GmbH", extref="C-2"))
    assert len(_seen(erp, kunnr)) == 3


def test_a_key_applied_to_another_customer_is_refused(erp: ErpServerProcess) -> None:
    first = _kunnr(_call(erp, "CreateCustomer", _key("k-own") + _customer("First", extref="C-3", version=1)))
    second = _kunnr(_call(erp, "CreateCustomer", _customer("Second", extref="C-4", version=1)))
    fault = _call(erp, "UpdateCustomer", _key("k-own") + _customer("Second", kunnr=second), status=500)
    assert "INVALID_DATA" in fault and "<FIELD>IDEMPOTENCY_KEY</FIELD>" in fault and first in fault
    assert len(_seen(erp, second)) == 1


def test_an_older_version_is_applied_and_recorded_not_refused(erp: ErpServerProcess) -> None:
    kunnr = _kunnr(_call(erp, "CreateCustomer", _customer("Order GmbH", extref="C-5", version=1)))
    _call(erp, "UpdateCustomer", _key("o-3") + _customer("Three", kunnr=kunnr, version=3))
    answer = _call(erp, "UpdateCustomer", _key("o-2") + _customer("Two", kunnr=kunnr, version=2))
    assert "<VERSION>2</VERSION>" in answer  # the ERP keeps what it is sent: the record shows 3 before 2
    assert [v for v, _, _ in _seen(erp, kunnr)] == [1, 3, 2]


def test_the_admin_read_is_bounded_and_pages(erp: ErpServerProcess) -> None:
    kunnr = _kunnr(_call(erp, "CreateCustomer", _customer("Pages GmbH", extref="C-6", version=1)))
    for version in range(2, 6):
        _call(erp, "UpdateCustomer", _key(f"p-{version}") + _customer("Pages", kunnr=kunnr, version=version))
    first = erp.customer_changes(kunnr, limit=2)
    rest = erp.customer_changes(kunnr, after=first[-1]["seq"], limit=10)
    assert [c["version"] for c in first + rest] == [1, 2, 3, 4, 5]
    assert len(erp.customer_changes(limit=3)) == 3  # every customer's, oldest first
    for query in ("limit=0", "limit=10001", "limit=x", "after=y"):
        refused = requests.get(f"{erp.base_url}/admin/customer-changes?{query}", timeout=5)
        assert refused.status_code == 400, query
    assert requests.post(f"{erp.base_url}/admin/customer-changes", timeout=5).status_code == 405


def test_a_database_of_the_previous_release_gets_the_change_record(tmp_path: Path) -> None:
    db = tmp_path / "erp.db"
    with ErpServerProcess(db):
        pass
    with sqlite3.connect(db) as conn:  # as the previous release left it: no version column, no record
        conn.execute("DROP TABLE customer_changes")
        conn.execute("ALTER TABLE customers DROP COLUMN version")
    with ErpServerProcess(db) as erp:
        kunnr = _kunnr(_call(erp, "CreateCustomer", _customer("Old DB", extref="C-7", version=1)))
        assert _seen(erp, kunnr) == [(1, None, "CreateCustomer")]
