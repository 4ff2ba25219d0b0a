"""The reference ERP against hostile requests: what one request may cost it (issue 7, case 9, acceptance 4).

Each shape is a body of about 2 MB, within the default ``max_body_bytes`` (so it is the shape that
is refused, not the size). The server's memory is the RSS of its own process: sampled with psutil
from a thread while the requests run, and its kernel high-water mark (VmHWM, reset through
/proc/PID/clear_refs) where Linux allows that, so a peak between two samples is not missed either.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import psutil
import pytest
import requests
from lxml import etree

from backoffice.erp.limits import DEFAULT_MAX_BODY_BYTES, RequestLimits
from backoffice.erp.process import ErpServerProcess

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:crm-esb:erp:v1"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
MB = 1024 * 1024
_keys = itertools.count()


def envelope(body: str) -> bytes:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:erp="{NS}">'
        f"<soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def order(kunnr: str, items: str, *, key: str | None = None) -> bytes:
    key = key or f"hostile-{next(_keys)}"
    return envelope(
        f"<erp:CreateSalesOrder><IDEMPOTENCY_KEY>{key}</IDEMPOTENCY_KEY><HEADER><KUNNR>{kunnr}</KUNNR>"
        f"</HEADER><ITEMS>{items}</ITEMS></erp:CreateSalesOrder>"
    )


# -- the shapes (each about 2 MB) ------------------------------------------------------------------


def empty_elements() -> bytes:
    """200,000 empty ITEM elements in one order (10 bytes each)."""
    return order("0000100001", "<ITEM   />" * 200_000)


def deep_nesting() -> bytes:
    """Chains of 200 nested elements, one after the other: each under libxml2's own depth limit (256)."""
    chain = "<ITEM>" * 200 + "</ITEM>" * 200
    return order("0000100001", chain * 800)


def many_attributes() -> bytes:
    """One element with 200,000 attributes."""
    attributes = " ".join(f'a{i}=""' for i in range(200_000))
    return envelope(f"<erp:GetCustomer {attributes}><KUNNR>0000100001</KUNNR></erp:GetCustomer>")


def attributes_everywhere() -> bytes:
    """9,000 ITEMs with 32 attributes each (288,000 in all): every per-element limit held (tester7 F3)."""
    attributes = " ".join(f"a{i}=''" for i in range(32))
    return order("0000100001", f"<ITEM {attributes}/>" * 9000)


def namespaces_everywhere() -> bytes:
    """4,400 ITEMs with 32 namespace declarations each (140,800 in all)."""
    declarations = " ".join(f"xmlns:p{i}='u'" for i in range(32))
    return order("0000100001", f"<ITEM {declarations}/>" * 4400)


def padded_items(kunnr: str = "0000100001", *, valid: bool = False) -> bytes:
    """999 ITEMs (the most the WSDL allows), each padded with about 2 kB of white space.

    Invalid (the default): MATNR's value carries the padding, and MATNR is an xsd:string of at
    most 18 characters. Valid: the padding is between the elements and around KWMENGE's value
    (white space an xsd:decimal collapses), so the order is one the ERP must serve.
    """
    pad = " " * 1900
    if valid:
        item = f"<ITEM>{pad}<MATNR>MAT-1003</MATNR><KWMENGE>{pad[:40]}1.000{pad[:40]}</KWMENGE></ITEM>"
    else:
        item = f"<ITEM>{pad}<MATNR>MAT-1003{pad[:100]}</MATNR><KWMENGE>1</KWMENGE></ITEM>"
    return order(kunnr, item * 999)


# -- measuring the server ---------------------------------------------------------------------------


class PeakRss:
    """The RSS of process ``pid`` while the ``with`` block runs: ``idle`` before it, ``peak`` during it (bytes)."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self._process = psutil.Process(pid)
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._hwm_reset = False
        self.idle = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def _high_water_mark(self) -> int | None:
        try:
            for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def __enter__(self) -> PeakRss:
        try:  # "5" resets the peak RSS to the current RSS (Linux >= 4.0)
            Path(f"/proc/{self._pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.idle = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        hwm = self._high_water_mark() if self._hwm_reset else None
        if hwm is not None:
            self.peak = max(self.peak, hwm)

    @property
    def rise(self) -> int:
        return self.peak - self.idle


def fault_of(response: requests.Response) -> tuple[str | None, str | None, str]:
    """(faultcode, the ErpFault detail's CODE, faultstring) of a SOAP fault answer."""
    assert response.status_code == 500, (response.status_code, response.text[:500])
    node = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert node is not None, response.text[:500]
    code = node.findtext(f"detail/{{{NS}}}ErpFault/CODE")
    return node.findtext("faultcode"), code, node.findtext("faultstring") or ""


def warm_up(erp: ErpServerProcess, kunnr: str | None = None) -> None:
    """Every code path once (an answer, a schema fault, a limit fault), so idle is idle and not first use."""
    with requests.Session() as s:
        assert s.post(erp.url, data=envelope("<erp:ListMaterials/>"), headers=HEADERS, timeout=10).status_code == 200
        small = order(kunnr or "0000100001", "<ITEM><MATNR>MAT-1003</MATNR><KWMENGE>1</KWMENGE></ITEM>" * 3)
        s.post(erp.url, data=small, headers=HEADERS, timeout=10)
        s.post(erp.url, data=order("1", "<ITEM><MATNR/></ITEM>"), headers=HEADERS, timeout=10)
        s.post(erp.url, data=order("1", "<ITEM/>" * 20_000), headers=HEADERS, timeout=10)


def create_rich_customer(erp: ErpServerProcess) -> str:
    customer = (
        f"<CUSTOMER><EXTREF>rich-{next(_keys)}</EXTREF><NAME1>Rich GmbH</NAME1><LAND1>DEU</LAND1>"
        "<KLIMK>9000000000.00</KLIMK></CUSTOMER>"
    )
    response = requests.post(
        erp.url, data=envelope(f"<erp:CreateCustomer>{customer}</erp:CreateCustomer>"), headers=HEADERS, timeout=10
    )
    assert response.status_code == 200, response.text
    kunnr = etree.fromstring(response.content).findtext(f".//{{{NS}}}CreateCustomerResponse/KUNNR")
    assert kunnr
    return kunnr


@pytest.fixture
def fresh_erp(tmp_path: Path) -> Iterator[ErpServerProcess]:
    """An ERP process of its own, with the default limits: nothing else has grown its heap."""
    with ErpServerProcess(tmp_path / "erp.db", seed=True) as erp:
        yield erp


# -- case 9: one request costs less than 10 times its size ----------------------------------------------

Shape = Callable[[], bytes]


@pytest.mark.parametrize(
    ("shape", "code", "names"),
    [
        (empty_elements, "REQUEST_TOO_COMPLEX", "max_elements"),
        (deep_nesting, "REQUEST_TOO_COMPLEX", "max_depth"),
        (many_attributes, "REQUEST_TOO_COMPLEX", "max_attributes"),
        (attributes_everywhere, "REQUEST_TOO_COMPLEX", "max_total_attributes"),
        (namespaces_everywhere, "REQUEST_TOO_COMPLEX", "max_total_attributes"),
        (padded_items, "SCHEMA_INVALID", "MATNR"),
    ],
    ids=[
        "200k-empty-elements",
        "deep-nesting",
        "200k-attributes",
        "9000x32-attributes",
        "4400x32-namespaces",
        "999-padded-items",
    ],
)
def test_a_hostile_request_is_refused_for_less_than_ten_times_its_size(
    fresh_erp: ErpServerProcess, shape: Shape, code: str, names: str
) -> None:
    body = shape()
    assert 1.85 * MB < len(body) <= DEFAULT_MAX_BODY_BYTES
    warm_up(fresh_erp)
    with PeakRss(fresh_erp.pid or 0) as rss:
        response = requests.post(fresh_erp.url, data=body, headers=HEADERS, timeout=60)
    print(f"{shape.__name__}: body {len(body) / MB:.2f} MB, server RSS +{rss.rise / MB:.1f} MB at its peak")
    assert rss.rise < 10 * len(body), f"+{rss.rise / MB:.0f} MB for a {len(body) / MB:.1f} MB request"
    assert fault_of(response)[:2] == ("soap:Client", code)
    assert names in fault_of(response)[2]


def test_the_largest_valid_order_is_served_for_less_than_ten_times_its_size(fresh_erp: ErpServerProcess) -> None:
    kunnr = create_rich_customer(fresh_erp)
    body = padded_items(kunnr, valid=True)
    assert 1.9 * MB < len(body) <= DEFAULT_MAX_BODY_BYTES
    warm_up(fresh_erp, kunnr)
    with PeakRss(fresh_erp.pid or 0) as rss:
        response = requests.post(fresh_erp.url, data=body, headers=HEADERS, timeout=60)
    print(f"valid 999-item order: body {len(body) / MB:.2f} MB, server RSS +{rss.rise / MB:.1f} MB at its peak")
    assert rss.rise < 10 * len(body), f"+{rss.rise / MB:.0f} MB for a {len(body) / MB:.1f} MB request"
    assert response.status_code == 200, response.text[:500]
    items = etree.fromstring(response.content).findall(f".//{{{NS}}}CreateSalesOrderResponse/SALES_ORDER/ITEMS/ITEM")
    assert len(items) == 999


# -- acceptance 4: 16 in parallel -------------------------------------------------------------------------


def test_sixteen_hostile_requests_in_parallel_raise_rss_by_at_most_200_mb(fresh_erp: ErpServerProcess) -> None:
    shapes: list[tuple[Shape, str]] = [
        (empty_elements, "REQUEST_TOO_COMPLEX"),
        (deep_nesting, "REQUEST_TOO_COMPLEX"),
        (attributes_everywhere, "REQUEST_TOO_COMPLEX"),
        (padded_items, "SCHEMA_INVALID"),
    ]
    bodies = {shape: shape() for shape, _ in shapes}
    assert all(len(body) <= DEFAULT_MAX_BODY_BYTES for body in bodies.values())  # the size limit refuses none
    assert DEFAULT_MAX_BODY_BYTES >= 2_000_000
    requested = [shapes[i % len(shapes)] for i in range(16)]
    warm_up(fresh_erp)

    def send(shape: Shape) -> requests.Response:
        return requests.post(fresh_erp.url, data=bodies[shape], headers=HEADERS, timeout=60)

    with PeakRss(fresh_erp.pid or 0) as rss, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, [shape for shape, _ in requested]))
    print(
        f"16 parallel hostile requests ({sum(len(bodies[s]) for s, _ in requested) / MB:.1f} MB in all): "
        f"server RSS idle {rss.idle / MB:.0f} MB, peak {rss.peak / MB:.0f} MB (+{rss.rise / MB:.0f} MB)"
    )
    assert rss.rise <= 200 * MB, f"+{rss.rise / MB:.0f} MB"
    for (shape, code), response in zip(requested, responses, strict=True):
        assert fault_of(response)[:2] == ("soap:Client", code), shape.__name__


# -- the limits are settings -----------------------------------------------------------------------------


def test_limits_are_settings_and_a_request_at_a_limit_passes(tmp_path: Path) -> None:
    limits = RequestLimits(max_body_bytes=4096, max_elements=40, max_depth=6, max_attributes=3, max_total_attributes=5)
    item = "<ITEM><MATNR>MAT-1003</MATNR><KWMENGE>1</KWMENGE></ITEM>"

    def post(erp: ErpServerProcess, body: bytes) -> requests.Response:
        return requests.post(erp.url, data=body, headers=HEADERS, timeout=10)

    with ErpServerProcess(tmp_path / "erp.db", seed=True, limits=limits) as erp:
        # envelope, Header, Body, wrapper, key, HEADER, KUNNR, ITEMS = 8, + 3 per item: 32 elements at 8 items
        assert fault_of(post(erp, order("0000100001", item * 8)))[1] == "UNKNOWN_CUSTOMER"
        faultcode, code, text = fault_of(post(erp, order("0000100001", item * 11)))
        assert (faultcode, code) == ("soap:Client", "REQUEST_TOO_COMPLEX")
        assert "max_elements = 40" in text
        # depth: Envelope 1, Body 2, wrapper 3, ITEMS 4, ITEM 5, MATNR 6
        assert fault_of(post(erp, order("0000100001", "<ITEM><MATNR><x/></MATNR></ITEM>")))[1] == "REQUEST_TOO_COMPLEX"
        three = envelope('<erp:ListMaterials a="1" b="2" c="3"/>')
        assert fault_of(post(erp, three))[1] == "SCHEMA_INVALID"  # at the limit: parsed, then refused by the schema
        four = envelope('<erp:ListMaterials a="1" b="2" c="3" d="4"/>')
        assert "max_attributes = 3" in fault_of(post(erp, four))[2]
        # the envelope declares 2 namespaces: 5 attributes in all are at the limit (as in three), 6 past it
        four_more = envelope('<erp:ListMaterials a="1" b="2"><x c="3" d="4"/></erp:ListMaterials>')
        assert "max_total_attributes = 5" in fault_of(post(erp, four_more))[2]
        too_large = post(erp, envelope("<erp:ListMaterials/>" + " " * 4096))
        assert too_large.status_code == 413
        assert "<CODE>REQUEST_TOO_LARGE</CODE>" in too_large.text
