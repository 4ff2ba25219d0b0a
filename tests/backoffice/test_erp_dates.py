"""Dates the WSDL allows and the ERP cannot hold: a business fault naming the field, never a changed date.

``10000-01-01`` and ``-0001-01-01`` are valid ``xsd:date`` values; Python's calendar holds years 1..9999,
and zeep made such a value None, which the ERP read as "no order date sent" and replaced with today
(issue 7, case 6's kind; tester7 F5). Hand-written envelopes, as in test_erp_soap.py.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest
import requests
from lxml import etree

from backoffice.erp.contract import Contract, UnreadableValue
from backoffice.erp.process import ErpServerProcess

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:crm-esb:erp:v1"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
_keys = itertools.count()


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


def post(erp: ErpServerProcess, body: str) -> requests.Response:
    data = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:erp="{NS}">'
        f"<soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    ).encode()
    return requests.post(erp.url, data=data, headers=HEADERS, timeout=10)


def fault(response: requests.Response) -> tuple[str | None, str | None, str | None, str | None]:
    """(faultcode, CODE, FIELD, VALUE) of a fault answer."""
    assert response.status_code == 500, response.text[:500]
    node = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert node is not None, response.text[:500]
    detail = f"detail/{{{NS}}}ErpFault/"
    return (
        node.findtext("faultcode"),
        node.findtext(detail + "CODE"),
        node.findtext(detail + "FIELD"),
        node.findtext(detail + "VALUE"),
    )


@pytest.fixture(scope="module")
def kunnr(erp: ErpServerProcess) -> str:
    customer = "<CUSTOMER><EXTREF>dates-1</EXTREF><NAME1>Datum GmbH</NAME1><LAND1>DEU</LAND1><KLIMK>1000.00</KLIMK>"
    response = post(erp, f"<erp:CreateCustomer>{customer}</CUSTOMER></erp:CreateCustomer>")
    assert response.status_code == 200, response.text
    found = etree.fromstring(response.content).findtext(f".//{{{NS}}}CreateCustomerResponse/KUNNR")
    assert found
    return found


def order(key: str, kunnr: str, audat: str) -> str:
    return (
        f"<erp:CreateSalesOrder><IDEMPOTENCY_KEY>{key}</IDEMPOTENCY_KEY><HEADER><KUNNR>{kunnr}</KUNNR>"
        f"<AUDAT>{audat}</AUDAT></HEADER><ITEMS><ITEM><MATNR>MAT-1002</MATNR><KWMENGE>1</KWMENGE></ITEM>"
        "</ITEMS></erp:CreateSalesOrder>"
    )


@pytest.mark.parametrize("audat", ["10000-01-01", "-0001-01-01"])
def test_an_order_date_the_erp_cannot_hold_is_a_business_fault_and_creates_nothing(
    erp: ErpServerProcess, kunnr: str, audat: str
) -> None:
    key = f"dates-{next(_keys)}"
    assert fault(post(erp, order(key, kunnr, audat))) == ("soap:Client", "INVALID_DATA", "HEADER.AUDAT", audat)
    # nothing was stored under the key: the same key with a date it can hold creates the order now
    created = post(erp, order(key, kunnr, "2025-03-01"))
    assert created.status_code == 200, created.text[:500]
    answer = etree.fromstring(created.content).find(f".//{{{NS}}}CreateSalesOrderResponse")
    assert answer is not None
    assert (answer.findtext("CREATED"), answer.findtext("SALES_ORDER/AUDAT")) == ("true", "2025-03-01")


def test_an_order_date_whose_due_date_the_erp_cannot_hold_is_a_business_fault(
    erp: ErpServerProcess, kunnr: str
) -> None:
    body = order(f"dates-{next(_keys)}", kunnr, "9999-12-31")  # as before: the invoice's due date is past 9999
    assert fault(post(erp, body)) == ("soap:Client", "INVALID_DATA", "HEADER.AUDAT", "9999-12-31")


def test_a_payment_date_the_erp_cannot_hold_is_a_business_fault(erp: ErpServerProcess) -> None:
    body = "<erp:PostPayment><VBELN>0090000001</VBELN><DMBTR>1.00</DMBTR><BUDAT>10000-01-01</BUDAT></erp:PostPayment>"
    assert fault(post(erp, body)) == ("soap:Client", "INVALID_DATA", "BUDAT", "10000-01-01")


def test_the_unreadable_value_is_not_logged_with_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    contract = Contract()
    payload = etree.fromstring(
        f'<erp:PostPayment xmlns:erp="{NS}"><VBELN>1</VBELN><DMBTR>1.00</DMBTR><BUDAT>{"1" * 5000}-01-01</BUDAT>'
        "</erp:PostPayment>"
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(UnreadableValue) as caught:
        contract.parse_request("PostPayment", payload)
    assert caught.value.field == "BUDAT"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
