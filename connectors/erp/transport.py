"""zeep's HTTP transport, made to read what ERPs and the proxies in front of them really answer.

Two things happen to every SOAP answer before zeep sees it (the first also to the WSDL):

- leading whitespace and UTF-8 byte order marks are dropped: an XML declaration must be the first
  thing in a document, so an answer starting ``"\\n<?xml ...?>"`` is unreadable to lxml although
  nothing is wrong with its content;
- an answer that is not an HTTP success and holds no SOAP 1.1 ``Body/Fault`` element (a proxy's
  HTML error page, ``<error>down for maintenance</error>``, an empty body) raises
  ``NotSoapAnswer`` with the HTTP status and content type. zeep itself would call it a ``Fault``
  without a code, which hides that the ERP was not the one answering.

The transport belongs to one thread's zeep client (like its Session): it keeps no state of its own.
"""

from __future__ import annotations

from typing import Any

import requests
import zeep
import zeep.exceptions
from lxml import etree

SOAP11_ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_FAULT_PATH = f"{{{SOAP11_ENVELOPE_NS}}}Body/{{{SOAP11_ENVELOPE_NS}}}Fault"
#: zeep treats these as a success (201/202 may be empty)
_SUCCESS = frozenset({200, 201, 202})
_UTF8_BOM = b"\xef\xbb\xbf"
_LEADING = b" \t\r\n"
#: characters of a parser message kept (it goes into errors and logs)
_REASON_LIMIT = 200
#: only for the error path: no DTD loading, no entities, no network, no huge trees
_CHECK_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
}


class NotSoapAnswer(zeep.exceptions.TransportError):
    """An HTTP failure status answered with something other than a SOAP fault.

    ``status_code`` is the HTTP status, ``content_type`` the answer's Content-Type (may be empty),
    ``what`` a short description of the body (``"<html> document"``, ``"no content"``, ``"not XML: ..."``).
    """

    def __init__(self, message: str = "", status_code: int = 0, content_type: str = "", what: str = "") -> None:
        super().__init__(message or f"HTTP {status_code}", status_code=status_code)  # type: ignore[no-untyped-call]
        self.content_type = content_type
        self.what = what


def without_leading_noise(content: bytes) -> bytes:
    """``content`` without the whitespace and UTF-8 byte order marks before its first markup."""
    start = 0
    while True:
        if content.startswith(_UTF8_BOM, start):
            start += len(_UTF8_BOM)
        elif start < len(content) and content[start] in _LEADING:
            start += 1
        else:
            return content[start:] if start else content


def describe_body(content: bytes) -> tuple[bool, str]:
    """(is a SOAP 1.1 envelope holding a Fault, a short description of the body) of a failed exchange."""
    if not content:
        return False, "no content"
    parser = etree.XMLParser(**_CHECK_PARSER_OPTIONS)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        reason = exc.msg if len(exc.msg) <= _REASON_LIMIT else exc.msg[:_REASON_LIMIT] + "...[truncated]"
        return False, f"not XML ({reason})"
    if root.find(_FAULT_PATH) is not None and root.tag == f"{{{SOAP11_ENVELOPE_NS}}}Envelope":
        return True, "a SOAP fault"
    return False, f"<{etree.QName(root).localname}> document"


class ErpTransport(zeep.Transport):
    """zeep's Transport with answers cleaned up and non-SOAP HTTP failures named (see the module)."""

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        response: requests.Response = super().post(address, message, headers)  # type: ignore[no-untyped-call]
        content_type = response.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/"):
            content = response.content
            cleaned = without_leading_noise(content)
            if cleaned is not content:
                response._content = cleaned  # requests keeps the read body here; zeep reads .content
        if response.status_code not in _SUCCESS:
            is_fault, what = describe_body(response.content)
            if not is_fault:
                raise NotSoapAnswer(
                    f"HTTP {response.status_code} ({content_type or 'no content type'}) with {what}, not a SOAP fault",
                    status_code=response.status_code,
                    content_type=content_type,
                    what=what,
                )
        return response

    def _load_remote_data(self, url: str) -> bytes:
        """The WSDL (or an imported schema), read with the same tolerance for leading noise."""
        content: bytes = super()._load_remote_data(url)  # type: ignore[no-untyped-call]
        return without_leading_noise(content)


__all__ = ["SOAP11_ENVELOPE_NS", "ErpTransport", "NotSoapAnswer", "describe_body", "without_leading_noise"]
