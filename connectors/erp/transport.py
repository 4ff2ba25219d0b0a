"""zeep's HTTP transport, made to read what ERPs and the proxies in front of them really answer.

Two things happen to every SOAP answer before zeep sees it (the first also to the WSDL):

- leading whitespace and UTF-8 byte order marks are dropped: an XML declaration must be the first
  thing in a document, so an answer starting ``"\\n<?xml ...?>"`` is unreadable to lxml although
  nothing is wrong with its content;
- an answer that is not an HTTP success and holds no SOAP 1.1 ``Body/Fault`` element (a proxy's
  HTML error page, ``<error>down for maintenance</error>``, an empty body) raises
  ``NotSoapAnswer`` with the HTTP status and content type. zeep itself would call it a ``Fault``
  without a code, which hides that the ERP was not the one answering.

Every exchange is bounded (``AnswerLimits``, from ``ErpSettings``):

- size: the answer is read in chunks with a running count (after decompression); past
  ``max_answer_bytes`` (or a Content-Length above it) ``AnswerTooLarge`` is raised before more is read;
- elements: a parsed tree costs about 350 bytes an element (lxml and zeep), so 10 MiB of ``<x/>``
  would be 500 MB; the read answer's start tags are counted (an upper estimate, at C speed) and past
  ``max_answer_elements`` ``AnswerTooManyElements`` is raised before any parser sees it;
- time: connect, send, headers and the whole answer within one ``Deadline``
  (``connectors.erp.deadline``), else ``CallDeadlineExceeded``;
- redirects: never followed; a 3xx answer raises ``RedirectRefused`` naming the status and the Location;
- WSDL and schema documents: only the configured WSDL location and documents under its directory
  (same scheme, host and port) are read; anything else (``file://``, another host, ``../``) raises
  ``LocationRefused`` before anything is opened.

The transport belongs to one thread's zeep client (like its Session); ``not_after`` (a
``time.monotonic()`` instant, set by the client per call) clips every deadline to the call's
retry budget.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import zeep
import zeep.exceptions
from lxml import etree

from connectors.erp.deadline import CallDeadlineExceeded, Deadline, DeadlineAdapter, reported

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


#: bytes asked of the socket per read
_CHUNK = 64 * 1024
#: characters of a Location header kept in an error
_LOCATION_LIMIT = 120


@dataclass(frozen=True)
class AnswerLimits:
    """What one exchange may spend: bytes of answer, seconds in all (see ``ErpSettings``)."""

    max_answer_bytes: int
    #: elements of one answer, WSDL or schema document (an upper estimate: ``element_estimate``)
    max_answer_elements: int
    #: the same for the WSDL and each schema document
    max_document_bytes: int
    call_deadline: float
    connect_timeout: float
    read_timeout: float
    #: the configured WSDL location: the origin and directory documents may be read from
    wsdl_url: str


class AnswerTooLarge(zeep.exceptions.TransportError):
    """The answer (or its Content-Length) exceeds ``limit`` bytes; ``seen`` is what was read or declared."""

    def __init__(self, limit: int, seen: int, declared: bool = False, setting: str = "max_answer_bytes") -> None:
        how = "declares" if declared else "exceeds"
        super().__init__(f"answer {how} {seen} bytes, over {setting}={limit}")  # type: ignore[no-untyped-call]
        self.limit = limit
        self.seen = seen
        self.setting = setting
        #: a WSDL or schema document, not a SOAP answer (fewer rows would not help)
        self.document = setting == "max_wsdl_bytes"


class AnswerTooManyElements(AnswerTooLarge):
    """The answer (or WSDL/schema document) holds about ``seen`` elements, over ``limit`` (``max_answer_elements``)."""

    def __init__(self, limit: int, seen: int, document: bool = False) -> None:
        what = "WSDL document" if document else "answer"
        zeep.exceptions.TransportError.__init__(  # type: ignore[no-untyped-call]
            self, f"{what} holds up to {seen} elements, over max_answer_elements={limit}"
        )
        self.limit = limit
        self.seen = seen
        self.setting = "max_answer_elements"
        self.document = document


def element_estimate(body: bytes | bytearray) -> int:
    """At least the number of elements in the XML ``body``: its ``<`` that do not open an end tag.

    Comments, processing instructions, CDATA and a declaration count too (over-counting is safe);
    two passes of ``bytes.count``, about 10 ms for 10 MiB, no tree built.
    """
    return body.count(b"<") - body.count(b"</")


def check_elements(body: bytes | bytearray, limit: int, document: bool = False) -> None:
    """Raise ``AnswerTooManyElements`` when ``body`` may hold more than ``limit`` elements."""
    seen = element_estimate(body)
    if seen > limit:
        raise AnswerTooManyElements(limit, seen, document=document)


class RedirectRefused(zeep.exceptions.TransportError):
    """A 3xx answer: redirects are not followed (the request would go somewhere not configured)."""

    def __init__(self, status_code: int, location: str) -> None:
        shown = location if len(location) <= _LOCATION_LIMIT else location[:_LOCATION_LIMIT] + "...[truncated]"
        super().__init__(  # type: ignore[no-untyped-call]
            f"HTTP {status_code} redirect to {shown or '(no Location)'} not followed", status_code=status_code
        )
        self.location = shown


class LocationRefused(zeep.exceptions.Error):
    """A WSDL or schema location outside the configured WSDL's origin and directory."""

    def __init__(self, url: str, wsdl_url: str) -> None:
        shown = url if len(url) <= _LOCATION_LIMIT else url[:_LOCATION_LIMIT] + "...[truncated]"
        super().__init__(  # type: ignore[no-untyped-call]
            f"refused to read {shown}: only {_origin_dir(wsdl_url)} (the configured WSDL's directory) is read"
        )


def _origin_dir(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{posixpath.dirname(parts.path) or '/'}"


def allowed_location(url: str, wsdl_url: str) -> bool:
    """Whether ``url`` is ``wsdl_url`` or lies under its directory, same scheme, host and port."""
    if url == wsdl_url:
        return True
    try:
        want, got = urlsplit(wsdl_url), urlsplit(url)
        same_origin = (got.scheme, got.hostname, got.port) == (want.scheme, want.hostname, want.port)
    except ValueError:  # a port that is not a number
        return False
    if not same_origin or got.username or got.password or "\\" in got.path:
        return False
    # the path as a server will read it: percent-escapes decoded (%2e%2e/ is ../ to most servers); an
    # escaped slash or backslash, or one that still decodes further, is refused outright
    decoded = unquote(got.path)
    if "%" in decoded or "\\" in decoded or "%2f" in got.path.lower() or "%5c" in got.path.lower():
        return False
    directory = posixpath.dirname(want.path).rstrip("/") + "/"
    path = posixpath.normpath(decoded or "/")
    return (path + "/").startswith(directory) or path == directory.rstrip("/")


def read_bounded(
    response: requests.Response,
    limit: int,
    deadline: Deadline,
    setting: str = "max_answer_bytes",
    max_elements: int | None = None,
) -> bytes:
    """The whole (decoded) body of a ``stream=True`` response, at most ``limit`` bytes, before ``deadline``,
    holding at most ``max_elements`` elements (``element_estimate``; None: not counted).

    Raises ``AnswerTooLarge`` (the response is closed, the rest never read), ``AnswerTooManyElements``
    or ``CallDeadlineExceeded``.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(limit, int(declared), declared=True, setting=setting)
    # One growing buffer, not a list of 64 kB pieces: a large buffer lives in its own mapping and goes
    # back to the system when dropped, where thousands of small pieces fragment each thread's heap
    # (8 threads reading 10 MB answers held 350 MB of RSS that way on a busy machine).
    body = bytearray()
    for chunk in response.iter_content(_CHUNK):
        if len(body) + len(chunk) > limit:
            raise AnswerTooLarge(limit, len(body) + len(chunk), setting=setting)
        body += chunk
        deadline.check()
    if max_elements is not None:  # counted on the buffer, before the copy: 8 threads refusing 10 MiB each
        check_elements(body, max_elements, document=setting == "max_wsdl_bytes")
    return bytes(body)


class NotSoapAnswer(zeep.exceptions.TransportError):
    """An HTTP failure status answered with something other than a SOAP fault.

    ``status_code`` is the HTTP status, ``content_type`` the answer's Content-Type (may be empty),
    ``what`` a short description of the body (``"<html> document"``, ``"no content"``, ``"not XML: ..."``).
    """

    def __init__(
        self,
        message: str = "",
        status_code: int = 0,
        content_type: str = "",
        what: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message or f"HTTP {status_code}", status_code=status_code)  # type: ignore[no-untyped-call]
        self.content_type = content_type
        self.what = what
        #: seconds the answer's ``Retry-After`` asked us to wait (delta-seconds form only), else None
        self.retry_after = retry_after


#: the longest ``Retry-After`` taken as given (the client clips it to its retry budget anyway)
_RETRY_AFTER_LIMIT = 3600


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header's delta-seconds (``"5"``), at most an hour; None for a date or junk."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return None
    return float(min(int(text), _RETRY_AFTER_LIMIT))


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

    def __init__(self, *, session: requests.Session, limits: AnswerLimits) -> None:
        adapter = DeadlineAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        timeouts = (limits.connect_timeout, limits.read_timeout)
        super().__init__(session=session, timeout=timeouts, operation_timeout=timeouts)  # type: ignore[no-untyped-call]
        self.limits = limits
        #: ``time.monotonic()`` instant no exchange may outlast (the call's retry budget); None: no budget
        self.not_after: float | None = None
        #: the body of the last SOAP answer (bounded by ``max_answer_bytes``); the client clears it
        #: before each attempt and reads it by hand when zeep cannot convert a value in it
        self.last_answer: bytes | None = None
        #: what the last WSDL or schema document read was (``describe_body``'s words, e.g. ``<html> document``)
        self.last_document: str | None = None

    def _deadline(self) -> Deadline:
        seconds, setting = self.limits.call_deadline, "call_deadline"
        if self.not_after is not None and self.not_after - time.monotonic() < seconds:
            seconds, setting = max(self.not_after - time.monotonic(), 0.0), "retry_budget"
        return Deadline(seconds, setting)

    def _exchange(self, method: str, url: str, *, document: bool = False, **kwargs: Any) -> requests.Response:
        """One bounded exchange: no redirects, the body read within the size limit and the deadline.

        ``document``: a WSDL or schema document (its own size limit), not a SOAP answer.
        """
        limits = self.limits
        limit, setting = (
            (limits.max_document_bytes, "max_wsdl_bytes") if document else (limits.max_answer_bytes, "max_answer_bytes")
        )
        with self._deadline() as deadline, reported(deadline):
            deadline.check()
            response = self.session.request(
                method,
                url,
                timeout=deadline.timeouts(limits.connect_timeout, limits.read_timeout),
                stream=True,
                allow_redirects=False,
                **kwargs,
            )
            try:
                if 300 <= response.status_code < 400:
                    raise RedirectRefused(response.status_code, response.headers.get("Location", ""))
                # elements counted before zeep, lxml or describe_body parse it: a tree costs far more than its bytes
                content = read_bounded(response, limit, deadline, setting, limits.max_answer_elements)
            except BaseException:
                response.close()  # not back to the pool: the rest of the answer is unread
                raise
            response._content = content  # what requests keeps after reading; zeep reads .content
            response._content_consumed = True  # type: ignore[union-attr]
            return response

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        response = self._exchange("POST", address, data=message, headers=headers)
        content_type = response.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/"):
            content = response.content
            cleaned = without_leading_noise(content)
            if cleaned is not content:
                response._content = cleaned  # requests keeps the read body here; zeep reads .content
        self.last_answer = response.content
        if response.status_code not in _SUCCESS:
            is_fault, what = describe_body(response.content)
            if not is_fault:
                raise NotSoapAnswer(
                    f"HTTP {response.status_code} ({content_type or 'no content type'}) with {what}, not a SOAP fault",
                    status_code=response.status_code,
                    content_type=content_type,
                    what=what,
                    retry_after=retry_after(response.headers.get("Retry-After")),
                )
        return response

    def load(self, url: str) -> bytes:
        """A WSDL or schema document: only from the configured WSDL's origin and directory."""
        if not allowed_location(url, self.limits.wsdl_url):
            raise LocationRefused(url, self.limits.wsdl_url)
        content: bytes = super().load(url)  # type: ignore[no-untyped-call]
        return content

    def _load_remote_data(self, url: str) -> bytes:
        """The WSDL (or an imported schema), bounded like an answer, with the same tolerance for leading noise."""
        response = self._exchange("GET", url, document=True)
        response.raise_for_status()
        content = without_leading_noise(response.content)
        self.last_document = describe_body(content)[1]
        return content


__all__ = [
    "SOAP11_ENVELOPE_NS",
    "AnswerLimits",
    "AnswerTooLarge",
    "AnswerTooManyElements",
    "CallDeadlineExceeded",
    "ErpTransport",
    "LocationRefused",
    "NotSoapAnswer",
    "RedirectRefused",
    "allowed_location",
    "check_elements",
    "describe_body",
    "element_estimate",
    "read_bounded",
    "retry_after",
    "without_leading_noise",
]
