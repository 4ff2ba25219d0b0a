"""A tiny HTTP server in a thread on 127.0.0.1 for answers the reference ERP never gives.

It serves the reference ERP's own WSDL on GET (or the document set for that path in ``documents``)
and, on POST, whatever the test told it to answer (status, content type, body), counting the POSTs.
A test that needs a misbehaving peer (an endless stream, a drip, a redirect) sets ``on_post`` to a
function that writes the answer itself; ``stream`` and ``drip`` are such writers, bounded so the
server stops by itself. Only for cases the real ERP cannot produce (a proxy's HTML page, dotted
fault codes, a newline before the XML declaration, hostile peers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import backoffice.erp

WSDL = (Path(backoffice.erp.__file__).parent / "erp.wsdl").read_bytes()


@dataclass
class Answer:
    status: int = 200
    content_type: str = "text/xml; charset=utf-8"
    body: bytes = b""


class FakeSoapServer:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.answer = Answer()
        #: answers for one operation (by its SOAPAction's last segment, e.g. ``GetCustomer``), over ``answer``
        self.answers: dict[str, Answer] = {}
        self.posts = 0
        #: bytes served before the WSDL (a newline, a byte order mark ...)
        self.wsdl_prefix = b""
        #: the headers of every POST
        self.headers: list[dict[str, str]] = []
        #: the body of every POST
        self.bodies: list[bytes] = []
        #: GETs served, and documents served by path (the WSDL itself when the path is not here)
        self.gets = 0
        self.documents: dict[str, bytes] = {}
        #: when set, writes the whole answer to a POST itself (status line, headers, body)
        self.on_post: Callable[[BaseHTTPRequestHandler], None] | None = None
        #: the same for a GET
        self.on_get: Callable[[BaseHTTPRequestHandler], None] | None = None
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/erp"

    def answer_with(self, status: int, body: bytes | str, content_type: str = "text/xml; charset=utf-8") -> None:
        self.answer = Answer(status, content_type, body.encode() if isinstance(body, str) else body)
        self.posts = 0

    def answer_operation(
        self, operation: str, status: int, body: bytes | str, content_type: str = "text/xml; charset=utf-8"
    ) -> None:
        """Answer ``operation`` (e.g. ``GetCustomer``) this way, whatever ``answer_with`` says for the rest."""
        self.answers[operation] = Answer(status, content_type, body.encode() if isinstance(body, str) else body)


@contextmanager
def fake_soap_server() -> Iterator[FakeSoapServer]:
    fake: FakeSoapServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.gets += 1
            if fake.on_get is not None:
                fake.on_get(self)
                return
            document = fake.documents.get(self.path)
            self._reply(200, "text/xml; charset=utf-8", document or fake.wsdl_prefix + WSDL)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake.posts += 1
            fake.headers.append(dict(self.headers))
            fake.bodies.append(body)
            if fake.on_post is not None:
                fake.on_post(self)
                return
            action = self.headers.get("SOAPAction", "").strip('"').rsplit("/", 1)[-1]
            answer = fake.answers.get(action, fake.answer)
            self._reply(answer.status, answer.content_type, answer.body)

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake = FakeSoapServer(server)
    thread = threading.Thread(target=server.serve_forever, name="fake-soap", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def stream(handler: BaseHTTPRequestHandler, chunk: bytes, total: int, status: int = 200) -> int:
    """Answer with ``chunk`` repeated up to ``total`` bytes, no Content-Length (the end is the close).

    Stops early when the client hangs up; returns the bytes written.
    """
    handler.send_response(status)
    handler.send_header("Content-Type", "text/xml; charset=utf-8")
    handler.send_header("Connection", "close")
    handler.end_headers()
    block = chunk * max(1, 65536 // len(chunk))
    sent = 0
    try:
        while sent < total:
            handler.wfile.write(block)
            sent += len(block)
    except OSError:  # the client hung up: what a bounded client does
        pass
    handler.close_connection = True
    return sent


def drip(
    handler: BaseHTTPRequestHandler, answer: bytes, interval: float, *, head: bool = False, length: bool = True
) -> int:
    """Write ``answer`` one byte per ``interval`` seconds: the body (Content-Length announced unless not
    ``length``: then the end is the close), or from the status line on when ``head``. Stops early when
    the client hangs up; returns the bytes written."""
    if not head:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/xml; charset=utf-8")
        if length:
            handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.flush()
    sent = 0
    try:
        for byte in answer:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            sent += 1
            time.sleep(interval)
    except OSError:
        pass
    handler.close_connection = True
    return sent


def redirect(handler: BaseHTTPRequestHandler, status: int, location: str) -> None:
    handler.send_response(status)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def envelope(body: str) -> str:
    """``body`` inside a SOAP 1.1 envelope (prefix ``soap``) that also declares the ERP's ``erp`` prefix."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:erp="urn:crm-esb:erp:v1">'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    )


def fault(code: str, text: str, detail: str = "") -> str:
    detail_xml = f"<detail>{detail}</detail>" if detail else ""
    fault_xml = f"<faultcode>{code}</faultcode><faultstring>{text}</faultstring>{detail_xml}"
    return envelope(f"<soap:Fault>{fault_xml}</soap:Fault>")


def erp_fault(code: str, text: str, field: str | None = None, value: str | None = None) -> str:
    # like the reference ERP: the ErpFault wrapper is qualified, its children are not
    parts = [f"<CODE>{code}</CODE>", f"<TEXT>{text}</TEXT>"]
    if field is not None:
        parts.append(f"<FIELD>{field}</FIELD>")
    if value is not None:
        parts.append(f"<VALUE>{value}</VALUE>")
    return f"<erp:ErpFault>{''.join(parts)}</erp:ErpFault>"


__all__ = [
    "WSDL",
    "Answer",
    "FakeSoapServer",
    "drip",
    "envelope",
    "erp_fault",
    "fake_soap_server",
    "fault",
    "redirect",
    "stream",
]
