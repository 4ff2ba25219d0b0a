"""The ERP connector (zeep) against the reference ERP in its own process, over real HTTP.

No mocks: outages, Server faults and slowness are injected into the real server through its
admin endpoint, and its request counts show whether the connector retried.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from backoffice.erp.process import ErpServerProcess
from canonical_model.errors import (
    BackOfficeUnavailable,
    BusinessRejection,
    ConnectorTimeout,
    RequestRejected,
)
from connectors.erp import ErpClient, ErpSettings


def fast(url: str, **overrides: Any) -> ErpSettings:
    """Settings with short pauses between attempts, to keep the suite quick."""
    return ErpSettings(url=url, retry_wait=0.01, retry_wait_max=0.05, **overrides)


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture
def quiet_erp(erp: ErpServerProcess) -> Iterator[ErpServerProcess]:
    """The module's ERP with counts reset, behaving again after the test whatever it injected."""
    erp.reset_stats()
    try:
        yield erp
    finally:
        erp.set_faults(fault_rate=0.0, latency_ms=0, outage=False)


@pytest.fixture(scope="module")
def client(erp: ErpServerProcess) -> Iterator[ErpClient]:
    with ErpClient(fast(erp.url, retries=3, operation_timeout=5)) as c:
        yield c


def customer(**overrides: Any) -> dict[str, Any]:
    return {
        "EXTREF": f"crm-{uuid.uuid4().hex[:10]}",
        "NAME1": "Shanghai Precision Parts",
        "STCD1": "91310000MA1FL8XQ3C",
        "STRAS": "88 Century Ave",
        "ORT01": "Shanghai",
        "PSTLZ": "200120",
        "LAND1": "CHN",
        "SMTP_ADDR": "buy@spp.example",
        "WAERS": "EUR",
        "KLIMK": Decimal("30000.00"),
        "ZTERM": "NT45",
        **overrides,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- round trips --------------------------------------------------------------------------------


def test_settings_defaults_and_secrets() -> None:
    settings = ErpSettings(url="http://erp.example:8081/erp", username="esb", password=SecretStr("pw"))
    assert settings.wsdl_url == "http://erp.example:8081/erp?wsdl"
    assert (settings.connect_timeout, settings.operation_timeout, settings.retries) == (3.0, 10.0, 3)
    assert "pw" not in repr(settings)
    with pytest.raises(ValueError, match="http"):
        ErpSettings(url="erp.example:8081")


def test_customer_round_trip(client: ErpClient) -> None:
    data = customer()
    created = client.create_customer(data, correlation_id="c-1")
    assert created.created and len(created.kunnr) == 10
    assert client.create_customer(data).kunnr == created.kunnr
    assert client.create_customer(data).created is False

    got = client.get_customer(created.kunnr)
    assert {k: got[k] for k in data} == data
    assert isinstance(got["KLIMK"], Decimal) and isinstance(got["CHSEQ"], int)

    updated = client.update_customer({"KUNNR": created.kunnr, "NAME1": "SPP Ltd.", "LAND1": "CHN", "TELF1": "+86 21"})
    assert (updated["NAME1"], updated["TELF1"], updated["ORT01"]) == ("SPP Ltd.", "+86 21", "Shanghai")
    assert updated["CHSEQ"] > got["CHSEQ"]
    batch = client.customers_changed_since(got["CHSEQ"])
    assert [c["KUNNR"] for c in batch.items] == [created.kunnr]
    assert (batch.last_seq, batch.more) == (updated["CHSEQ"], False)


def test_materials(client: ErpClient) -> None:
    materials = {m["MATNR"]: m for m in client.list_materials()}
    assert materials["MAT-1001"]["MAKTX"] == "Industrial pump P200"
    assert materials["MAT-1003"]["MEINS"] == "L" and materials["MAT-1003"]["NETPR"] == Decimal("4.20")
    assert materials["MAT-1006"]["NETPR"] == Decimal("9.75") and materials["MAT-1006"]["MEINS"] == "KG"

    first = client.materials_changed_since(0, max_rows=4)
    assert len(first.items) == 4 and first.more and first.last_seq == first.items[-1]["CHSEQ"]
    matnr = f"T-{uuid.uuid4().hex[:8]}"
    saved = client.save_material(
        {"MATNR": matnr, "MAKTX": "Test part", "MEINS": "PAK", "NETPR": Decimal("3.10"), "WAERS": "EUR"}
    )
    assert saved.created and saved.material["LVORM"] is False
    page = client.materials_changed_since(saved.material["CHSEQ"] - 1)
    assert [m["MATNR"] for m in page.items] == [matnr] and page.more is False


def test_order_to_cash_round_trip(client: ErpClient) -> None:
    kunnr = client.create_customer(customer(KLIMK=Decimal("10000.00"), ZTERM="NT14")).kunnr
    since = client.invoices_changed_since(0, max_rows=5000).last_seq
    key = f"crm-order-{uuid.uuid4().hex[:8]}"
    header = {"KUNNR": kunnr, "AUART": "TA", "WAERS": "EUR", "BSTKD": "PO-77", "AUDAT": date(2025, 3, 1)}
    items = [
        {"MATNR": "MAT-1001", "KWMENGE": Decimal("2"), "VRKME": "ST", "NETPR": Decimal("1200.00")},
        {"MATNR": "MAT-1003", "KWMENGE": Decimal("12.5")},  # unit and price from the material master
    ]
    result = client.create_sales_order(key, header, items, correlation_id="c-2")
    order = result.order
    assert result.created
    assert order["NETWR"] == Decimal("2452.50")  # 2 x 1200.00 + 12.5 x 4.20
    assert [(i["POSNR"], i["VRKME"], i["NETWR"]) for i in order["ITEMS"]["ITEM"]] == [
        (10, "ST", Decimal("2400.00")),
        (20, "L", Decimal("52.50")),
    ]
    replay = client.create_sales_order(key, header, items)
    assert (replay.created, replay.order["VBELN"]) == (False, order["VBELN"])
    assert client.get_sales_order(order["VBELN"]) == order
    assert order["VBELN"] in [o["VBELN"] for o in client.sales_orders_changed_since(order["CHSEQ"] - 1).items]

    invoices = client.invoices_changed_since(since).items
    assert [(i["AUBEL"], i["NETWR"], i["OPEN_AMOUNT"], i["STATUS"]) for i in invoices] == [
        (order["VBELN"], Decimal("2452.50"), Decimal("2452.50"), "OPEN")
    ]
    invoice = invoices[0]
    assert (invoice["FKDAT"], invoice["ZFBDT"]) == (date(2025, 3, 1), date(2025, 3, 15))  # NT14

    credit = client.credit_status(kunnr)
    assert (credit["SKFOR"], credit["AVAIL"], credit["CRBLK"]) == (Decimal("2452.50"), Decimal("7547.50"), False)

    paid_since = client.payments_changed_since(0, max_rows=5000).last_seq
    part = client.post_payment(invoice["VBELN"], Decimal("452.50"), date(2025, 3, 10))
    assert (part["VBELN"], part["KUNNR"], part["DMBTR"], part["BUDAT"]) == (
        invoice["VBELN"],
        kunnr,
        Decimal("452.50"),
        date(2025, 3, 10),
    )
    assert client.get_invoice(invoice["VBELN"])["OPEN_AMOUNT"] == Decimal("2000.00")
    client.post_payment(invoice["VBELN"], Decimal("2000.00"), date(2025, 3, 12))
    paid = client.get_invoice(invoice["VBELN"])
    assert (paid["OPEN_AMOUNT"], paid["STATUS"]) == (Decimal("0.00"), "PAID")
    assert paid["CHSEQ"] > invoice["CHSEQ"]
    assert [p["DMBTR"] for p in client.payments_changed_since(paid_since).items] == [
        Decimal("452.50"),
        Decimal("2000.00"),
    ]
    assert client.credit_status(kunnr)["AVAIL"] == Decimal("10000.00")


# -- faults and retries ---------------------------------------------------------------------------


def test_business_fault_is_a_business_rejection_and_not_retried(client: ErpClient, quiet_erp: ErpServerProcess) -> None:
    kunnr = client.create_customer(customer()).kunnr
    items = [{"MATNR": "MAT-1002", "KWMENGE": Decimal("1")}, {"MATNR": "MAT-9999", "KWMENGE": Decimal("1")}]
    with pytest.raises(BusinessRejection) as caught:
        client.create_sales_order("k-" + uuid.uuid4().hex, {"KUNNR": kunnr}, items, correlation_id="corr-42")
    error = caught.value
    assert (error.code, error.field, error.value) == ("UNKNOWN_MATERIAL", "ITEMS.ITEM[1].MATNR", "MAT-9999")
    assert (error.system, error.operation, error.correlation_id) == ("erp", "CreateSalesOrder", "corr-42")
    assert "MAT-9999" in error.message
    assert error.__cause__ is not None
    assert quiet_erp.calls("CreateSalesOrder") == 1


def test_credit_block(client: ErpClient) -> None:
    kunnr = client.create_customer(customer(KLIMK=Decimal("2000.00"))).kunnr
    with pytest.raises(BusinessRejection) as caught:
        client.create_sales_order("k-" + uuid.uuid4().hex, {"KUNNR": kunnr}, [{"MATNR": "MAT-1001", "KWMENGE": 3}])
    assert caught.value.code == "CREDIT_BLOCK"
    assert "3750.00" in caught.value.message and "2000.00" in caught.value.message


def test_schema_fault_is_a_request_rejection_and_not_retried(client: ErpClient, quiet_erp: ErpServerProcess) -> None:
    with pytest.raises(RequestRejected) as caught:
        client.create_customer(customer(LAND1="GERMANY"))  # zeep does not check maxLength; the ERP does
    assert "SCHEMA_INVALID" in caught.value.message and not isinstance(caught.value, BusinessRejection)
    assert quiet_erp.calls("CreateCustomer") == 1


def test_request_that_does_not_fit_the_wsdl_is_never_sent(client: ErpClient, quiet_erp: ErpServerProcess) -> None:
    with pytest.raises(RequestRejected):
        client.create_customer({"EXTREF": "x", "LAND1": "DEU"})  # NAME1 missing
    with pytest.raises(RequestRejected):
        client.create_customer(customer(COLOUR="blue"))
    assert quiet_erp.calls("CreateCustomer") == 0


def test_outage_is_retried_then_unavailable(client: ErpClient, quiet_erp: ErpServerProcess) -> None:
    client.get_customer(client.create_customer(customer()).kunnr)  # the WSDL is loaded: count only the call
    quiet_erp.reset_stats()
    quiet_erp.set_faults(outage=True)
    with pytest.raises(BackOfficeUnavailable) as caught:
        client.list_materials(correlation_id="c-9")
    assert "503" in caught.value.message and caught.value.correlation_id == "c-9"
    assert quiet_erp.calls("ListMaterials") == client.settings.retries == 3


def test_server_fault_is_unavailable_and_not_retried(client: ErpClient, quiet_erp: ErpServerProcess) -> None:
    client.list_materials()
    quiet_erp.reset_stats()
    quiet_erp.set_faults(fault_rate=1.0)
    with pytest.raises(BackOfficeUnavailable):
        client.list_materials()
    assert quiet_erp.calls("ListMaterials") == 1


def test_slow_answer_is_a_timeout(erp: ErpServerProcess, quiet_erp: ErpServerProcess) -> None:
    with ErpClient(fast(erp.url, operation_timeout=0.3, retries=2)) as slow_client:
        slow_client.list_materials()
        quiet_erp.reset_stats()
        quiet_erp.set_faults(latency_ms=800)
        started = time.monotonic()
        with pytest.raises(ConnectorTimeout) as caught:
            slow_client.list_materials()
        assert time.monotonic() - started < 2.5
        assert caught.value.operation == "ListMaterials"
        assert quiet_erp.calls("ListMaterials") == 2  # a timeout is retried like any transport failure


def test_post_payment_is_not_retried_after_a_timeout(
    erp: ErpServerProcess, client: ErpClient, quiet_erp: ErpServerProcess
) -> None:
    kunnr = client.create_customer(customer()).kunnr
    order = client.create_sales_order("k-" + uuid.uuid4().hex, {"KUNNR": kunnr}, [{"MATNR": "MAT-1005", "KWMENGE": 4}])
    invoice = next(
        i for i in client.invoices_changed_since(order.order["CHSEQ"]).items if i["AUBEL"] == order.order["VBELN"]
    )
    with ErpClient(fast(erp.url, operation_timeout=0.3, retries=3)) as slow_client:
        slow_client.list_materials()
        quiet_erp.reset_stats()
        quiet_erp.set_faults(latency_ms=800)
        with pytest.raises(ConnectorTimeout):
            slow_client.post_payment(invoice["VBELN"], Decimal("10.00"), date(2025, 1, 2))
        assert quiet_erp.calls("PostPayment") == 1  # it may have been booked: never twice


# -- lazy WSDL, auth, threads ---------------------------------------------------------------------


def test_client_created_while_the_erp_is_down_works_once_it_is_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/erp"
    with structlog.testing.capture_logs() as logs:
        early = ErpClient(fast(url, username="esb", password=SecretStr("s3cret"), retries=2))
        with pytest.raises(BackOfficeUnavailable):
            early.list_materials()  # nothing listens yet: the WSDL cannot be read
        with ErpServerProcess(tmp_path / "erp.db", port=port, user="esb", password="s3cret") as erp:
            assert erp.url == url
            assert {m["MATNR"] for m in early.list_materials()} >= {"MAT-1001", "MAT-1006"}
            early.list_materials()
            assert erp.stats()["wsdl"] == 1  # fetched once, then reused

            wrong = ErpClient(fast(url, username="esb", password=SecretStr("nope"), retries=3))
            with pytest.raises(RequestRejected, match="401"):
                wrong.list_materials()
            assert erp.stats()["unauthorized"] == 1  # a 4xx is not retried
        early.close()
        wrong.close()
    assert any(entry.get("log_level") == "warning" for entry in logs)  # the retry while the ERP was down
    assert "nope" not in repr(logs) and "s3cret" not in repr(logs)


def test_one_client_shared_by_threads(client: ErpClient) -> None:
    def work(n: int) -> tuple[str, str]:
        created = client.create_customer(customer(NAME1=f"Thread customer {n}"))
        return threading.current_thread().name, client.get_customer(created.kunnr)["NAME1"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(work, range(24)))
    assert sorted(name for _, name in results) == sorted(f"Thread customer {n}" for n in range(24))


def test_threads_share_one_download_and_parse_of_the_wsdl(quiet_erp: ErpServerProcess) -> None:
    with ErpClient(fast(quiet_erp.url)) as shared:

        def work(_: int) -> tuple[int, bool]:
            count = len(shared.list_materials())
            return count, shared._local.client.wsdl is shared._document  # this thread's client, the shared parse

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(16)))
    assert all(count >= 6 and reused for count, reused in results)
    assert quiet_erp.stats()["wsdl"] == 1, "one download for every thread"


def test_a_request_over_the_erps_limits_is_a_request_rejection_not_a_business_one(tmp_path: Path) -> None:
    """REQUEST_TOO_COMPLEX refuses the request's shape, like SCHEMA_INVALID: no business reason to report."""
    from backoffice.erp.limits import RequestLimits

    with (
        ErpServerProcess(tmp_path / "erp.db", seed=True, limits=RequestLimits(max_elements=40)) as small,
        ErpClient(fast(small.url, retries=1)) as c,
    ):
        items = [{"MATNR": "MAT-1001", "KWMENGE": 1} for _ in range(30)]
        with pytest.raises(RequestRejected) as caught:
            c.create_sales_order("k-" + uuid.uuid4().hex, {"KUNNR": "0000100001"}, items)
        assert "REQUEST_TOO_COMPLEX" in caught.value.message
        assert not isinstance(caught.value, BusinessRejection)
        assert small.calls("CreateSalesOrder") == 0  # refused before the operation ran


def test_the_url_in_the_clients_log_lines_carries_no_secret() -> None:
    """The client binds its URL to every log line: user, password and secret query parameters stay out."""
    from connectors.erp.client import _redacted

    shown = _redacted("https://esb:pw-x7@erp.example:8443/erp?api_key=k-x7&client=1")
    assert shown == "https://erp.example:8443/erp?api_key=***&client=1"
