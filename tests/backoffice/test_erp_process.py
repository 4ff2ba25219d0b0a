"""ErpServerProcess: the way the demo and every other test start the reference ERP."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from backoffice.erp.process import ErpServerError, ErpServerProcess


def test_a_server_that_cannot_start_reports_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "erp.db").mkdir()  # a folder where the SQLite file should be
    with pytest.raises(ErpServerError, match="exited with status") as caught:
        ErpServerProcess(tmp_path / "erp.db", startup_timeout=20).start()
    assert "unable to open database" in str(caught.value)


def _soap(url: str, body: str) -> str:
    envelope = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:erp="urn:crm-esb:erp:v1">'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    response = requests.post(url, data=envelope.encode(), headers={"Content-Type": "text/xml"}, timeout=5)
    assert response.status_code == 200, response.text
    return response.text


def test_stop_ends_the_process_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    db = tmp_path / "erp.db"
    customer = "<CUSTOMER><EXTREF>crm-1</EXTREF><NAME1>Kept GmbH</NAME1><LAND1>DEU</LAND1></CUSTOMER>"
    with ErpServerProcess(db) as erp:
        url = erp.url
        basic = ("fault_rate", "latency_ms", "outage")
        assert {k: erp.faults()[k] for k in basic} == {"fault_rate": 0.0, "latency_ms": 0, "outage": False}
        changed = erp.set_faults(latency_ms=5)
        assert {k: changed[k] for k in basic} == {"fault_rate": 0.0, "latency_ms": 5, "outage": False}
        assert "<KUNNR>0000100001</KUNNR>" in _soap(erp.url, f"<erp:CreateCustomer>{customer}</erp:CreateCustomer>")
        assert "serving" in erp.stderr_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "?wsdl", timeout=2)
    with ErpServerProcess(db, latency_ms=7, seed=True) as again:
        assert again.faults()["latency_ms"] == 7
        assert "Kept GmbH" in _soap(again.url, "<erp:GetCustomer><KUNNR>0000100001</KUNNR></erp:GetCustomer>")
        materials = _soap(again.url, "<erp:ListMaterials/>")
        assert materials.count("<MATNR>MAT-1001</MATNR>") == 1  # --seed again adds nothing twice
