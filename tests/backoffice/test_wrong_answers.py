"""The reference ERP's wrong-answer switch: rules are bounded, and rewrite only the answer."""

from __future__ import annotations

import pytest
from lxml import etree

from backoffice.erp.misbehaviour import MAX_RULES, WrongAnswers


def _answer() -> etree._Element:
    return etree.fromstring(
        b'<erp:CreateSalesOrderResponse xmlns:erp="urn:crm-esb:erp:v1"><SALES_ORDER><VBELN>0000000001</VBELN>'
        b"<WAERS>EUR</WAERS><NETWR>1250.00</NETWR><ITEMS><ITEM><NETWR>1250.00</NETWR></ITEM></ITEMS></SALES_ORDER>"
        b"<CREATED>true</CREATED></erp:CreateSalesOrderResponse>"
    )


def test_rules_replace_text_or_drop_elements_of_one_operation() -> None:
    wrong = WrongAnswers()
    wrong.replace({"CreateSalesOrder": {"SALES_ORDER/NETWR": "1250.125", "SALES_ORDER/WAERS": None}})
    answer = _answer()
    wrong.apply("GetSalesOrder", answer)
    assert answer.findtext("SALES_ORDER/NETWR") == "1250.00", "other operations answer right"
    wrong.apply("CreateSalesOrder", answer)
    assert answer.findtext("SALES_ORDER/NETWR") == "1250.125"
    assert answer.find("SALES_ORDER/WAERS") is None
    assert answer.findtext("SALES_ORDER/ITEMS/ITEM/NETWR") == "1250.00", "only the path named"
    assert wrong.replace({}) == {}


@pytest.mark.parametrize(
    "rules",
    [
        [],
        {"CreateSalesOrder": "x"},
        {"CreateSalesOrder": {"": "x"}},
        {"CreateSalesOrder": {"A": 1}},
        {"CreateSalesOrder": {"A": "x" * 1001}},
        {"CreateSalesOrder": {f"A{i}": "x" for i in range(MAX_RULES + 1)}},
    ],
)
def test_malformed_rules_are_refused(rules: object) -> None:
    wrong = WrongAnswers()
    with pytest.raises(ValueError):
        wrong.replace(rules)
    assert wrong.as_json() == {}
