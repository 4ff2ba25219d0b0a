"""The kept credit exposure (``credit_exposure``, moved by every order billed and payment) always equals the
sum over the customer's history: after orders, replays, refusals, payments, on an older database, and under
concurrent orders against one credit limit."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from lxml import etree
from sqlalchemy import Engine, inspect, select

from backoffice.erp import NAMESPACE as NS
from backoffice.erp import credit
from backoffice.erp.faults import ErpFault
from backoffice.erp.process import ErpServerProcess
from backoffice.erp.service import ErpService
from backoffice.erp.store import (
    ErpDatabase,
    create_schema,
    credit_exposure,
    invoices,
    open_engine,
    seed_materials,
)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
_keys = itertools.count()


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


@pytest.fixture(scope="module")
def erp_db(erp: ErpServerProcess) -> Iterator[Engine]:
    """The ERP's own SQLite file, read beside the running server (WAL: readers never wait)."""
    engine = open_engine(erp.db_path, pool_size=1)
    yield engine
    engine.dispose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}-{next(_keys)}"


def call(session: requests.Session, erp: ErpServerProcess, body: str) -> requests.Response:
    envelope = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:erp="{NS}">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    return session.post(erp.url, data=envelope.encode(), headers=HEADERS, timeout=30)


def answer(response: requests.Response) -> etree._Element:
    assert response.status_code == 200, response.text
    body = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    return body[0]


def fault_code(response: requests.Response) -> str | None:
    assert response.status_code == 500, response.text
    return etree.fromstring(response.content).findtext(f".//{{{NS}}}ErpFault/CODE")


def create_customer(session: requests.Session, erp: ErpServerProcess, klimk: str) -> str:
    body = (
        f"<erp:CreateCustomer><CUSTOMER><EXTREF>{unique('crm')}</EXTREF><NAME1>Kredit GmbH</NAME1>"
        f"<LAND1>DEU</LAND1><KLIMK>{klimk}</KLIMK></CUSTOMER></erp:CreateCustomer>"
    )
    return str(answer(call(session, erp, body)).findtext("KUNNR"))


def order(key: str, kunnr: str, netpr: str, *, audat: str = "2026-03-01") -> str:
    return (
        f"<erp:CreateSalesOrder><IDEMPOTENCY_KEY>{key}</IDEMPOTENCY_KEY><HEADER><KUNNR>{kunnr}</KUNNR>"
        f"<AUDAT>{audat}</AUDAT></HEADER><ITEMS><ITEM><MATNR>MAT-1002</MATNR><KWMENGE>1</KWMENGE>"
        f"<NETPR>{netpr}</NETPR></ITEM></ITEMS></erp:CreateSalesOrder>"
    )


def credit_status(session: requests.Session, erp: ErpServerProcess, kunnr: str) -> dict[str, Decimal]:
    status = answer(call(session, erp, f"<erp:GetCreditStatus><KUNNR>{kunnr}</KUNNR></erp:GetCreditStatus>"))
    return {name: Decimal(status.findtext(f"CREDIT_STATUS/{name}") or "nan") for name in ("SAUFT", "SKFOR", "AVAIL")}


def assert_kept_equals_sum(session: requests.Session, erp: ErpServerProcess, erp_db: Engine, kunnr: str) -> Decimal:
    """The exposure the ERP answers, the row it keeps and the sum over the history agree; returns SKFOR."""
    with erp_db.connect() as conn:
        sauft, skfor = credit.full_exposure(conn, kunnr)
        kept = conn.execute(
            select(credit_exposure.c.sauft, credit_exposure.c.skfor).where(credit_exposure.c.kunnr == kunnr)
        ).one()
    answered = credit_status(session, erp, kunnr)
    assert (kept.sauft, kept.skfor) == (sauft, skfor)
    assert (answered["SAUFT"], answered["SKFOR"]) == (sauft, skfor)
    return skfor


def invoice_of(erp_db: Engine, vbeln: str) -> str:
    with erp_db.connect() as conn:
        return str(conn.execute(select(invoices.c.vbeln).where(invoices.c.aubel == vbeln)).scalar_one())


def test_kept_exposure_follows_orders_replays_refusals_and_payments(erp: ErpServerProcess, erp_db: Engine) -> None:
    with requests.Session() as s:
        kunnr = create_customer(s, erp, "1000.00")
        assert assert_kept_equals_sum(s, erp, erp_db, kunnr) == Decimal("0.00")

        first_key = unique("order")
        first = answer(call(s, erp, order(first_key, kunnr, "250.50"))).findtext("SALES_ORDER/VBELN")
        second = answer(call(s, erp, order(unique("order"), kunnr, "99.99"))).findtext("SALES_ORDER/VBELN")
        assert first and second
        assert assert_kept_equals_sum(s, erp, erp_db, kunnr) == Decimal("350.49")

        # a replay changes nothing; a refusal (credit block, a due date past the calendar) neither
        answer(call(s, erp, order(first_key, kunnr, "250.50")))
        assert fault_code(call(s, erp, order(unique("order"), kunnr, "700.00"))) == "CREDIT_BLOCK"
        assert fault_code(call(s, erp, order(unique("order"), kunnr, "1.00", audat="9999-12-31"))) == "INVALID_DATA"
        assert assert_kept_equals_sum(s, erp, erp_db, kunnr) == Decimal("350.49")

        invoice = invoice_of(erp_db, first)
        for amount in ("100.25", "150.25"):  # part, then the rest: the invoice is PAID
            body = (
                f"<erp:PostPayment><VBELN>{invoice}</VBELN><DMBTR>{amount}</DMBTR>"
                "<BUDAT>2026-03-02</BUDAT></erp:PostPayment>"
            )
            answer(call(s, erp, body))
        assert assert_kept_equals_sum(s, erp, erp_db, kunnr) == Decimal("99.99")

        # the credit freed by the payment is available again
        answer(call(s, erp, order(unique("order"), kunnr, "700.00")))
        assert assert_kept_equals_sum(s, erp, erp_db, kunnr) == Decimal("799.99")
        assert credit_status(s, erp, kunnr)["AVAIL"] == Decimal("200.01")


def test_concurrent_orders_against_one_credit_limit_never_over_commit(erp: ErpServerProcess, erp_db: Engine) -> None:
    with requests.Session() as s:
        kunnr = create_customer(s, erp, "1000.00")

    def place(_: int) -> str:
        with requests.Session() as own:
            response = call(own, erp, order(unique("order"), kunnr, "300.00"))
        return "created" if response.status_code == 200 else str(fault_code(response))

    with ThreadPoolExecutor(12) as pool:
        outcomes = sorted(pool.map(place, range(24)))
    assert outcomes == ["CREDIT_BLOCK"] * 21 + ["created"] * 3
    with requests.Session() as s:
        assert assert_kept_equals_sum(s, erp, erp_db, kunnr) == Decimal("900.00")


def _order_request(kunnr: str, netpr: str) -> dict[str, object]:
    return {
        "IDEMPOTENCY_KEY": unique("order"),
        "HEADER": {"KUNNR": kunnr},
        "ITEMS": {"ITEM": [{"MATNR": "MAT-1002", "KWMENGE": Decimal(1), "NETPR": Decimal(netpr)}]},
    }


def test_a_database_from_before_the_kept_exposure_opens_with_its_sums(tmp_path: Path) -> None:
    path = tmp_path / "erp.db"
    engine = open_engine(path, pool_size=1)
    create_schema(engine)
    seed_materials(engine)
    service = ErpService(ErpDatabase(engine))
    kunnrs = []
    for number in range(3):
        customer = {"EXTREF": f"old-{number}", "NAME1": "Alt AG", "LAND1": "DEU", "KLIMK": Decimal("5000.00")}
        kunnrs.append(str(service.call("CreateCustomer", {"CUSTOMER": customer})["KUNNR"]))
    for number in range(9):
        service.call("CreateSalesOrder", _order_request(kunnrs[number % 3], f"{10 * (number + 1)}.15"))
    with pytest.raises(ErpFault):
        service.call("CreateSalesOrder", _order_request(kunnrs[0], "4999.00"))
    # as a database made before the kept exposure and the index on the orders' customer looked
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE credit_exposure")
        conn.exec_driver_sql("DROP INDEX ix_sales_orders_kunnr")

    create_schema(engine)

    assert "ix_sales_orders_kunnr" in {index["name"] for index in inspect(engine).get_indexes("sales_orders")}
    with engine.connect() as conn:
        kept = {row.kunnr: (row.sauft, row.skfor) for row in conn.execute(select(credit_exposure))}
        assert kept == {kunnr: credit.full_exposure(conn, kunnr) for kunnr in kunnrs}
    assert kept[kunnrs[0]] == (Decimal("0.00"), Decimal("10.15") + Decimal("40.15") + Decimal("70.15"))
    # and the kept rows move on from there
    service.call("CreateSalesOrder", _order_request(kunnrs[1], "0.85"))
    with engine.connect() as conn:
        assert (
            conn.execute(select(credit_exposure.c.skfor).where(credit_exposure.c.kunnr == kunnrs[1])).scalar_one()
            == (credit.full_exposure(conn, kunnrs[1])[1])
        )
    engine.dispose()
