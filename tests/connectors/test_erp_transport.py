"""The ERP edge's pure parts: fault code classes and leading noise (no server needed)."""

from __future__ import annotations

import pytest

from connectors.erp.errors import fault_class
from connectors.erp.transport import describe_body, without_leading_noise


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("soap:Server", "Server"),
        ("soap:Server.userException", "Server"),
        ("SOAP-ENV:Server.Timeout.Database", "Server"),
        ("Client.BadArguments", "Client"),  # no prefix
        ("env:Receiver", "Receiver"),  # SOAP 1.2's name for Server
        ("{http://schemas.xmlsoap.org/soap/envelope/}Client.Auth", "Client"),
        ("{urn:vendor}Server", None),  # a vendor's own namespace: not SOAP's Server
        ("", None),
    ],
)
def test_fault_class_is_the_first_segment_of_the_local_name(code: str, kind: str | None) -> None:
    assert fault_class(code) == kind


def test_without_leading_noise() -> None:
    assert without_leading_noise(b"\n \xef\xbb\xbf\t<?xml?>") == b"<?xml?>"
    same = b"<?xml?>\n"
    assert without_leading_noise(same) is same
    assert without_leading_noise(b"") == b""


def test_describe_body() -> None:
    fault = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault/></s:Body></s:Envelope>'
    assert describe_body(fault) == (True, "a SOAP fault")
    assert describe_body(b"<html><body/></html>") == (False, "<html> document")
    assert describe_body(b"") == (False, "no content")
    assert describe_body(b"oops")[1].startswith("not XML (")
