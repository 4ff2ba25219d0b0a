"""The ERP client against a hostile or broken ERP (issue 7, cases 1, 2 and 3).

Answer size and paging run against the reference ERP in its own process (a record too big for the
limit is written straight into its database, as a record its API would not take). The answers the
reference ERP never gives (an endless stream, a drip, a redirect, a DTD, a WSDL including a local
file) come from the small server in a thread (``fake_soap``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model.errors import ConnectorTimeout, PermanentError, RequestRejected
from connectors.erp import ErpClient, ErpSettings
from connectors.erp.errors import AnswerOverLimit
from connectors.erp.settings import MAX_ANSWER_BYTES, MAX_ANSWER_ELEMENTS
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.services import CrmService
from flows.material_sync import CURSOR, sync_materials
from tests.connectors.fake_soap import WSDL, FakeSoapServer, drip, envelope, fake_soap_server, redirect, stream

LIST_MATERIALS = envelope("<erp:ListMaterialsResponse/>").encode()


def settings(url: str, **overrides: Any) -> ErpSettings:
    return ErpSettings(url=url, **{"retries": 3, "retry_wait": 0.01, "retry_wait_max": 0.02, **overrides})


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture
def fake() -> Iterator[FakeSoapServer]:
    with fake_soap_server() as server:
        yield server


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[CrmService]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade(engine)
    yield CrmService(session_factory(engine))
    engine.dispose()


def _add_material(erp: ErpServerProcess, matnr: str, name: str) -> int:
    """A material written into the ERP's database (a name its API would refuse); returns its CHSEQ."""
    with sqlite3.connect(erp.db_path, timeout=10) as conn:
        conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'CHSEQ'")
        (seq,) = conn.execute("SELECT value FROM counters WHERE name = 'CHSEQ'").fetchone()
        conn.execute(
            "INSERT INTO materials (matnr, maktx, meins, netpr, waers, lvorm, chseq)"
            " VALUES (:matnr, :maktx, 'ST', 100, 'EUR', 0, :seq)",
            {"matnr": matnr, "maktx": name, "seq": seq},
        )
    conn.close()
    return int(seq)


# -- case 1: answer size -------------------------------------------------------------------------


def test_an_endless_answer_is_cut_at_the_default_limit_and_not_retried(fake: FakeSoapServer) -> None:
    # The endpoint streams 300 MB of <x/>; 4x the default limit shows the same here.
    served: list[int] = []
    fake.on_post = lambda handler: served.append(stream(handler, b"<x/>", 4 * MAX_ANSWER_BYTES))
    with ErpClient(settings(fake.url)) as client, pytest.raises(RequestRejected) as caught:
        client.list_materials()
    assert f"max_answer_bytes={MAX_ANSWER_BYTES}" in caught.value.message, caught.value
    assert fake.posts == 1, "an answer too big for the limit is too big again: not retried"
    # read while counting: the client hung up after the limit, it did not take the whole stream
    assert _wait_for(lambda: bool(served)) and served[0] < 2 * MAX_ANSWER_BYTES, served


def test_a_declared_length_over_the_limit_is_refused_before_reading(fake: FakeSoapServer) -> None:
    fake.answer_with(200, b"<x/>" * 2048)  # 8 kB, announced in Content-Length
    with ErpClient(settings(fake.url, max_answer_bytes=4096)) as client, pytest.raises(AnswerOverLimit) as caught:
        client.list_materials()
    assert caught.value.limit == 4096 and "declares 8192 bytes" in caught.value.message


def test_a_wsdl_over_its_limit_is_refused_without_halving(fake: FakeSoapServer) -> None:
    with ErpClient(settings(fake.url, max_wsdl_bytes=4096)) as client, pytest.raises(RequestRejected) as caught:
        client.materials_changed_since(0)
    assert "max_wsdl_bytes=4096" in caught.value.message and not isinstance(caught.value, AnswerOverLimit)
    assert (fake.gets, fake.posts) == (1, 0)


def test_a_page_over_the_limit_is_read_in_halves_and_the_sync_completes(erp: ErpServerProcess, crm: CrmService) -> None:
    # Wide records (names of 1,500 characters, which the mapping then keeps aside) make a page of
    # the 10 seeded materials and these 6 larger than 8 kB: the client halves the page size until a
    # page fits, and the material sync walks the whole feed with it.
    with ErpClient(settings(erp.url)) as reader:
        before = reader.materials_changed_since(0, max_rows=500).last_seq
    wide = [_add_material(erp, f"MAT-W{n}", f"Wide material {n} " + "w" * 1500) for n in range(6)]
    with ErpClient(settings(erp.url, max_answer_bytes=8192)) as client:
        batch = client.materials_changed_since(before - 2, max_rows=500)
        assert batch.more and 1 <= batch.max_rows < 8, batch.max_rows
        assert len(batch.items) == batch.max_rows
        erp.reset_stats()
        result = sync_materials(crm, client, page_size=500)
    # 500 -> 250 -> ... -> 7 rows once (7 calls), then the run keeps 7 rows a page (15 calls if each
    # page started again at 500)
    assert erp.calls("GetMaterialsChangedSince") <= 10
    assert crm.cursor(CURSOR) == wide[-1], "the sync read the whole feed in smaller pages"
    assert result.rejected == 6 and result.written >= 10


def test_a_single_record_over_the_limit_is_named(erp: ErpServerProcess, crm: CrmService) -> None:
    with ErpClient(settings(erp.url)) as client:
        last = client.materials_changed_since(0, max_rows=5000).last_seq
    huge = _add_material(erp, "MAT-HUGE", "h" * 12000)
    with ErpClient(settings(erp.url, max_answer_bytes=8192)) as client:
        with pytest.raises(AnswerOverLimit) as caught:
            client.materials_changed_since(last, max_rows=500)
        error = caught.value
        assert error.record == f"MATERIAL after CHSEQ {last}", error
        assert f"MATERIAL after CHSEQ {last}" in error.message and "max_answer_bytes=8192" in error.message
        assert isinstance(error, PermanentError)
        with pytest.raises(AnswerOverLimit):
            sync_materials(crm, client, page_size=500)
    assert huge == last + 1
    assert crm.cursor(CURSOR) == last, "the pages before the huge record were taken"


def test_the_halving_asks_for_half_the_rows_down_to_one(fake: FakeSoapServer) -> None:
    fake.answer_with(200, b"<x/>" * 4096)
    with ErpClient(settings(fake.url, max_answer_bytes=4096)) as client, pytest.raises(AnswerOverLimit) as caught:
        client.customers_changed_since(41, max_rows=500)
    asked = [int(re.search(rb"MAX_ROWS>(\d+)<", body).group(1)) for body in fake.bodies]  # type: ignore[union-attr]
    assert asked == [500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert caught.value.record == "CUSTOMER after CHSEQ 41"


def test_the_halving_stops_at_the_retry_budget(fake: FakeSoapServer) -> None:
    """A server that answers every page slowly and too large: the paged read gives up within its budget."""

    def slow_and_large(handler: Any) -> None:
        time.sleep(0.3)
        body = b"<x/>" * 4096
        handler.send_response(200)
        handler.send_header("Content-Type", "text/xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    fake.on_post = slow_and_large
    budget = settings(fake.url, max_answer_bytes=4096, retry_budget=1.0)
    started = time.monotonic()
    with ErpClient(budget) as client, pytest.raises(ConnectorTimeout, match="retry_budget=1 s"):
        client.customers_changed_since(41, max_rows=500)
    assert time.monotonic() - started < 1.0 + 0.3 + 1.0  # the budget, one more slow answer, and slack
    assert 3 <= len(fake.bodies) < 9  # not all nine halvings


def test_an_element_heavy_answer_under_the_byte_limit_is_refused_naming_the_element_limit(
    fake: FakeSoapServer,
) -> None:
    # 2.6 M <x/> just under max_answer_bytes (the tester's answer): counted before any parser sees it
    body = envelope(
        "<erp:ListMaterialsResponse>" + "<x/>" * ((MAX_ANSWER_BYTES - 2000) // 4) + "</erp:ListMaterialsResponse>"
    )
    assert len(body) < MAX_ANSWER_BYTES
    fake.answer_with(200, body)
    with ErpClient(settings(fake.url)) as client, pytest.raises(AnswerOverLimit) as caught:
        client.list_materials()
    error = caught.value
    assert f"max_answer_elements={MAX_ANSWER_ELEMENTS}" in error.message, error
    assert (error.setting, error.limit) == ("max_answer_elements", MAX_ANSWER_ELEMENTS)
    assert isinstance(error, PermanentError) and fake.posts == 1, "the same answer again: not retried"


def test_a_page_over_the_element_limit_is_halved_down_to_one(fake: FakeSoapServer) -> None:
    fake.answer_with(
        200,
        envelope("<erp:GetCustomersChangedSinceResponse>" + "<x/>" * 2000 + "</erp:GetCustomersChangedSinceResponse>"),
    )
    with ErpClient(settings(fake.url, max_answer_elements=1000)) as client, pytest.raises(AnswerOverLimit) as caught:
        client.customers_changed_since(41, max_rows=500)
    asked = [int(re.search(rb"MAX_ROWS>(\d+)<", body).group(1)) for body in fake.bodies]  # type: ignore[union-attr]
    assert asked == [500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert caught.value.record == "CUSTOMER after CHSEQ 41"
    assert "CUSTOMER after CHSEQ 41 alone is over max_answer_elements=1000" in caught.value.message


def test_a_wsdl_over_the_element_limit_is_refused_without_halving(fake: FakeSoapServer) -> None:
    fake.wsdl_prefix = b"<!---->" * 1000  # the reference WSDL holds 611 elements; these count too
    with ErpClient(settings(fake.url, max_answer_elements=1000)) as client, pytest.raises(RequestRejected) as caught:
        client.materials_changed_since(0)
    assert "max_answer_elements=1000" in caught.value.message and not isinstance(caught.value, AnswerOverLimit)
    assert (fake.gets, fake.posts) == (1, 0)


# -- case 2: time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "close-delimited"])
def test_a_dripped_answer_ends_at_the_call_deadline(fake: FakeSoapServer, length: bool) -> None:
    # one byte every 0.1 s: every read gets a byte long before the 5 s read timeout. Without a
    # Content-Length the cut at the deadline looks like the answer's end: still a timeout, not a parse error
    sent: list[int] = []
    fake.on_post = lambda handler: sent.append(drip(handler, LIST_MATERIALS, 0.1, length=length))
    quick = settings(fake.url, operation_timeout=5, call_deadline=1, retries=1)
    with ErpClient(quick) as client, pytest.raises(ConnectorTimeout) as caught:
        client.list_materials()
    assert "1 s (call_deadline)" in caught.value.message, caught.value
    fake_done = _wait_for(lambda: bool(sent))
    assert fake_done and sent[0] < len(LIST_MATERIALS), "the client hung up before the drip ended"


def test_dripped_headers_end_at_the_call_deadline(fake: FakeSoapServer) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n" + b"X-Slow: " + b"s" * 200 + b"\r\n\r\n"
    sent: list[int] = []
    fake.on_post = lambda handler: sent.append(drip(handler, answer, 0.05, head=True))
    quick = settings(fake.url, operation_timeout=5, call_deadline=1, retries=1)
    with ErpClient(quick) as client, pytest.raises(ConnectorTimeout) as caught:
        client.list_materials()
    assert "call_deadline" in caught.value.message
    assert _wait_for(lambda: bool(sent)) and sent[0] < len(answer)


def test_retries_stop_at_the_retry_budget(fake: FakeSoapServer) -> None:
    fake.on_post = lambda handler: drip(handler, LIST_MATERIALS, 0.1)
    overrides = {"operation_timeout": 5, "call_deadline": 1, "retry_budget": 1.5, "retries": 10}
    with ErpClient(settings(fake.url, **overrides)) as client, pytest.raises(ConnectorTimeout) as caught:
        client.list_materials()
    assert "(retry_budget)" in caught.value.message, caught.value
    assert fake.posts == 2, "the second attempt got what was left of the budget, no third one"


def _wait_for(condition: Any, attempts: int = 100) -> bool:
    """The fake's handler thread records what it sent when it stops: poll for it, bounded."""
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.05)
    return False


# -- case 3: other edges -----------------------------------------------------------------------------


def test_an_answer_with_a_dtd_is_refused_for_good(fake: FakeSoapServer) -> None:
    doctype = '<?xml version="1.0"?><!DOCTYPE Envelope [<!ELEMENT Envelope ANY>]>'
    fake.answer_with(200, doctype + envelope("<erp:ListMaterialsResponse/>").split("?>", 1)[1])
    with ErpClient(settings(fake.url)) as client, pytest.raises(RequestRejected) as caught:
        client.list_materials()
    assert "DTDForbidden" in caught.value.message
    assert fake.posts == 1


def _wsdl_including(location: str) -> bytes:
    schema_open = re.search(rb"<xsd:schema[^>]*>", WSDL)
    assert schema_open is not None
    include = f'<xsd:include schemaLocation="{location}"/>'.encode()
    return WSDL[: schema_open.end()] + include + WSDL[schema_open.end() :]


@pytest.mark.parametrize("where", ["file", "other-host", "parent-dir"])
def test_a_wsdl_include_outside_the_wsdl_directory_is_not_read(
    fake: FakeSoapServer, tmp_path: Path, where: str
) -> None:
    schema = b'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:crm-esb:erp:v1"/>'
    local = tmp_path / "local.xsd"
    local.write_bytes(schema)
    port = fake.url.split(":")[2].split("/")[0]
    location = {
        "file": local.as_uri(),
        "other-host": f"http://localhost:{port}/wsdl/other.xsd",
        "parent-dir": "../outside.xsd",
    }[where]
    fake.documents["/wsdl/erp.wsdl"] = _wsdl_including(location)
    fake.documents["/outside.xsd"] = fake.documents["/wsdl/other.xsd"] = schema
    fake.answer_with(200, LIST_MATERIALS)
    elsewhere = settings(fake.url, wsdl_url=fake.url.replace("/erp", "/wsdl/erp.wsdl"))
    with ErpClient(elsewhere) as client, pytest.raises(RequestRejected) as caught:
        client.list_materials()
    assert "refused to read" in caught.value.message and location.rsplit("/", 1)[-1] in caught.value.message
    assert fake.gets == 1 and fake.posts == 0, "only the WSDL itself was read"


def test_a_wsdl_include_under_the_wsdl_directory_is_read(fake: FakeSoapServer) -> None:
    schema = b'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:crm-esb:erp:v1"/>'
    fake.documents["/wsdl/erp.wsdl"] = _wsdl_including("types/more.xsd")
    fake.documents["/wsdl/types/more.xsd"] = schema
    fake.answer_with(200, LIST_MATERIALS)
    with ErpClient(settings(fake.url, wsdl_url=fake.url.replace("/erp", "/wsdl/erp.wsdl"))) as client:
        assert client.list_materials() == []
    assert fake.gets == 2


def test_a_redirect_is_not_followed(fake: FakeSoapServer) -> None:
    with fake_soap_server() as elsewhere:
        target = elsewhere.url.replace("/erp", "/elsewhere?" + "q" * 500)
        fake.on_post = lambda handler: redirect(handler, 302, target)
        with ErpClient(settings(fake.url)) as client, pytest.raises(RequestRejected) as caught:
            client.list_materials()
        assert (elsewhere.gets, elsewhere.posts) == (0, 0), "nothing went to the other URL"
    message = caught.value.message
    assert "HTTP 302 redirect to" in message and elsewhere.url.replace("/erp", "/elsewhere") in message
    assert "...[truncated]" in message and len(message) < 400
    assert fake.posts == 1


def test_a_redirect_of_the_wsdl_is_not_followed(fake: FakeSoapServer) -> None:
    with fake_soap_server() as elsewhere:
        fake.on_get = lambda handler: redirect(handler, 301, elsewhere.url + "?wsdl")
        with ErpClient(settings(fake.url)) as client, pytest.raises(RequestRejected) as caught:
            client.list_materials()
        assert (elsewhere.gets, elsewhere.posts) == (0, 0), "nothing was read from the other URL"
    assert "HTTP 301 redirect to" in caught.value.message


@pytest.mark.parametrize(
    ("location", "allowed"),
    [
        ("http://h:1/wsdl/types.xsd", True),
        ("http://h:1/wsdl/sub/x.xsd", True),
        ("http://h:1/wsdl/a%20b.xsd", True),
        ("http://h:1/wsdl/../secret.xsd", False),
        ("http://h:1/wsdl/%2e%2e/secret.xsd", False),  # a server reads it as ../secret.xsd
        ("http://h:1/wsdl/%2E%2E/secret.xsd", False),
        ("http://h:1/wsdl/..%2fsecret.xsd", False),
        ("http://h:1/wsdl/%252e%252e/secret.xsd", False),  # decodes twice
        ("http://h:1/wsdl/..%5csecret.xsd", False),
    ],
)
def test_a_schema_location_is_judged_as_the_server_will_read_its_path(location: str, allowed: bool) -> None:
    from connectors.erp.transport import allowed_location

    assert allowed_location(location, "http://h:1/wsdl/erp.wsdl") is allowed
