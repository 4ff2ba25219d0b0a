"""The ERP's WSGI application: the SOAP endpoint, its WSDL, health, and the admin endpoints.

Routes (``base`` is http://host:port):
    POST base/erp              SOAP 1.1 (dispatch by the Body's element; SOAPAction is not needed);
                               Content-Type text/xml only (application/soap+xml: soap:VersionMismatch,
                               anything else 415), body within max_body_bytes (413 beyond)
    GET  base/erp?wsdl         the WSDL, soap:address pointing at this server
    GET  base/health           200 while the process serves (even during an injected outage)
    GET|POST base/admin/faults injected misbehaviour (JSON, misbehaviour.FaultSettings)
    GET|DELETE base/admin/stats  request counts per operation and of injected misbehaviour (JSON); DELETE resets them
    GET|POST base/admin/wrong-answers  answers given wrong on purpose (JSON, misbehaviour.WrongAnswers)
    GET  base/admin/customer-changes?kunnr=K&after=SEQ&limit=N  the customer change record (JSON list)
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import structlog

from backoffice.erp import SERVICE_PATH, customers, faults, soap
from backoffice.erp.contract import Contract
from backoffice.erp.faults import ErpFault
from backoffice.erp.limits import RequestLimits
from backoffice.erp.misbehaviour import LATE_OPERATIONS, Misbehaviour, Stats, WrongAnswers
from backoffice.erp.service import ErpService

log = structlog.get_logger(__name__)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
#: SOAP 1.1 over HTTP (section 6.1.1): a request's media type; parameters (charset) are allowed
SOAP_MEDIA_TYPE = "text/xml"
#: SOAP 1.2's media type: such a request is answered soap:VersionMismatch, unread
SOAP_12_MEDIA_TYPE = "application/soap+xml"


class DropConnection(Exception):
    """Raised by the app to close the connection without any answer (an injected timeout).

    The server (``server.py``) turns it into its own "client disconnected": nothing is written.
    """


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, value: Any) -> Reply:
    return Reply(status, json.dumps(value).encode(), "application/json")


class ErpApp:
    def __init__(
        self,
        contract: Contract,
        service: ErpService,
        *,
        misbehaviour: Misbehaviour | None = None,
        stats: Stats | None = None,
        credentials: tuple[str, str] | None = None,
        listen: tuple[str, int] | None = None,
        limits: RequestLimits | None = None,
        max_held: int = 4,
    ) -> None:
        """``max_held``: at most this many requests are held at once by an injected timeout (each holds
        one of the server's threads); beyond it a request that drew a timeout is served as usual."""
        self.contract = contract
        self.limits = limits or RequestLimits()
        self.service = service
        self.misbehaviour = misbehaviour or Misbehaviour()
        self.stats = stats or Stats()
        self.wrong_answers = WrongAnswers()
        self._credentials = credentials
        #: the address the server listens on, for the WSDL's soap:address (set once it is known)
        self.listen = listen
        self._held = threading.BoundedSemaphore(max(1, max_held))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            reply = self._route(environ)
        except DropConnection:
            raise
        except Exception:  # the last line of defence: never a traceback to the caller
            log.exception("request failed")
            reply = Reply(500, b"internal error\n")
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))), *reply.headers]
        start_response(f"{reply.status} {_REASONS.get(reply.status, '')}".strip(), headers)
        return [reply.body]

    def _route(self, environ: WSGIEnvironment) -> Reply:
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/health" and method == "GET":
            return _json(200, {"status": "ok", "faults": self.misbehaviour.settings.as_json()})
        if not self._authorised(environ):
            self.stats.count("unauthorized")
            return Reply(401, b"authentication required\n", headers=(("WWW-Authenticate", 'Basic realm="erp"'),))
        if path == "/admin/faults":
            return self._faults(environ, method)
        if path == "/admin/wrong-answers":
            return self._wrong_answers(environ, method)
        if path == "/admin/customer-changes":
            return self._customer_changes(environ, method)
        if path == "/admin/stats":
            if method == "DELETE":
                self.stats.reset()
            return _json(200, self.stats.snapshot())
        if path != SERVICE_PATH:
            return Reply(404, b"not found\n")
        if method == "GET" and environ.get("QUERY_STRING", "").lower().startswith("wsdl"):
            return self._wsdl(environ)
        if method != "POST":
            return Reply(405, b"POST a SOAP 1.1 envelope, or GET ?wsdl\n", headers=(("Allow", "GET, POST"),))
        return self._soap(environ)

    def _authorised(self, environ: WSGIEnvironment) -> bool:
        if self._credentials is None:
            return True
        scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected_user, expected_password = self._credentials
        # compare both, always, in constant time
        return hmac.compare_digest(user, expected_user) & hmac.compare_digest(password, expected_password)

    def _misbehave(self) -> Reply | None:
        settings = self.misbehaviour.settings
        if settings.latency_ms:
            time.sleep(settings.latency_ms / 1000)
        if settings.outage:
            return Reply(503, b"", headers=(("Retry-After", "1"),))
        return None

    def _wsdl(self, environ: WSGIEnvironment) -> Reply:
        self.stats.count("wsdl")
        refused = self._misbehave()
        if refused is not None:
            return refused
        return Reply(200, self.contract.wsdl_for(self._service_url(environ)), soap.CONTENT_TYPE)

    def _service_url(self, environ: WSGIEnvironment) -> str:
        scheme = environ.get("wsgi.url_scheme", "http")
        if self.listen is not None and self.listen[0] not in _WILDCARD_HOSTS:
            host, port = self.listen
            host = f"[{host}]" if ":" in host else host
            return f"{scheme}://{host}:{port}{SERVICE_PATH}"
        # listening on every interface: the address the caller used is the one that works for it
        return f"{scheme}://{environ.get('HTTP_HOST', 'localhost')}{SERVICE_PATH}"

    def _refuse(self, status: int, code: str, text: str) -> Reply:
        """A request refused before its body is read: counted as invalid, answered with a Client fault."""
        self.stats.count("invalid")
        log.info("refused", status=status, code=code)
        return Reply(status, soap.fault(self.contract, ErpFault(code, text)), soap.CONTENT_TYPE)

    def _soap(self, environ: WSGIEnvironment) -> Reply:
        media_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if media_type == SOAP_12_MEDIA_TYPE:
            self.stats.count("invalid")
            mismatch = soap.version_mismatch(f"a SOAP 1.2 request ({SOAP_12_MEDIA_TYPE})")
            return Reply(500, soap.fault(self.contract, mismatch), soap.CONTENT_TYPE)
        if media_type != SOAP_MEDIA_TYPE:
            shown = soap.clip(media_type, 60) or "none"
            text = f"a SOAP 1.1 request is {SOAP_MEDIA_TYPE}, this one is {shown}"
            return self._refuse(415, faults.UNSUPPORTED_MEDIA_TYPE, text)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        limit = self.limits.max_body_bytes
        if length > limit:
            return self._refuse(413, faults.REQUEST_TOO_LARGE, f"request body over {limit} bytes (max_body_bytes)")
        body = environ["wsgi.input"].read(length)
        envelope = soap.read_envelope(self.contract, body, self.limits)
        if envelope.operation is None:
            self.stats.count("invalid")
        else:
            self.stats.count_operation(envelope.operation)
        refused = self._misbehave()
        if refused is not None:
            return refused
        try:
            poison = self.misbehaviour.poison_key(body)
            if poison is not None:
                self.stats.count_injected("poison")
                text = f"injected failure of a poison request (admin/faults fault_keys: {soap.clip(poison, 40)})"
                raise ErpFault(faults.INJECTED_FAULT, text, server=True)
            chosen = self.misbehaviour.applies_to(envelope.operation)
            if chosen:
                self._hold_maybe(envelope.operation)
            if chosen and self.misbehaviour.inject_malformed():
                self.stats.count_injected("malformed")
                return Reply(200, _cut_short(envelope.operation), soap.CONTENT_TYPE)
            if chosen and self.misbehaviour.inject_fault():
                self.stats.count_injected("fault")
                raise ErpFault(faults.INJECTED_FAULT, "injected failure (admin/faults fault_rate)", server=True)
            operation, request = soap.parse_request(self.contract, envelope)
            result = self.service.call(operation, request)
            amend = functools.partial(self.wrong_answers.apply, operation)
            reply = Reply(200, soap.response(self.contract, operation, result, amend), soap.CONTENT_TYPE)
            if chosen and operation in LATE_OPERATIONS and self.misbehaviour.inject_late_answer():
                self.stats.count_injected("late")
                late_ms = self.misbehaviour.settings.late_answer_ms
                log.info("answer held after the commit (injected late answer)", operation=operation, ms=late_ms)
                time.sleep(late_ms / 1000)
            return reply
        except DropConnection:
            raise
        except ErpFault as refusal:
            log.info(
                "fault",
                operation=envelope.operation,
                code=refusal.code,
                field=None if refusal.field is None else soap.clip(refusal.field, soap.MAX_FIELD_CHARS),
                correlation_id=soap.clip(environ.get("HTTP_X_CORRELATION_ID") or "", 80) or None,
            )
            return Reply(500, soap.fault(self.contract, refusal), soap.CONTENT_TYPE)
        except Exception:
            log.exception("operation failed", operation=envelope.operation)
            failure = ErpFault(faults.INTERNAL_ERROR, "the ERP failed to process the request", server=True)
            return Reply(500, soap.fault(self.contract, failure), soap.CONTENT_TYPE)

    def _hold_maybe(self, operation: str | None) -> None:
        """An injected timeout: hold the request ``timeout_ms`` without an answer, then ``DropConnection``.

        At most ``max_held`` requests are held at once (each holds a server thread); past that the
        request goes on as if no timeout had been drawn, so held requests never starve the others.
        """
        if not self.misbehaviour.inject_timeout():
            return
        if not self._held.acquire(blocking=False):
            log.info("injected timeout skipped: too many requests held already", operation=operation)
            return
        try:
            self.stats.count_injected("timeout")
            hold_ms = self.misbehaviour.settings.timeout_ms
            log.info("request held without an answer (injected timeout)", operation=operation, ms=hold_ms)
            time.sleep(hold_ms / 1000)
        finally:
            self._held.release()
        raise DropConnection

    def _faults(self, environ: WSGIEnvironment, method: str) -> Reply:
        if method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                changes = json.loads(environ["wsgi.input"].read(min(length, 65536)) or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                settings = self.misbehaviour.update(changes)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                return _json(400, {"error": str(exc)})
            shown = {key: value for key, value in settings.as_json().items() if key != "fault_keys"}
            log.info("misbehaviour changed", **shown, fault_keys=len(settings.fault_keys))
        elif method != "GET":
            return Reply(405, b"GET or POST\n", headers=(("Allow", "GET, POST"),))
        return _json(200, self.misbehaviour.settings.as_json())

    def _customer_changes(self, environ: WSGIEnvironment, method: str) -> Reply:
        """``[{"seq", "kunnr", "version", "message_id", "operation", "applied_at"}, ...]`` oldest first;
        query: ``kunnr`` (one customer), ``after`` (seq, default 0), ``limit`` (1..10,000, default 1,000)."""
        if method != "GET":
            return Reply(405, b"GET\n", headers=(("Allow", "GET"),))
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")[:2000], max_num_fields=10)
        try:
            kunnr = query["kunnr"][0][:10] if "kunnr" in query else None
            after = int(query.get("after", ["0"])[0])
            limit = int(query.get("limit", ["1000"])[0])
        except ValueError as exc:
            return _json(400, {"error": soap.clip(str(exc), 200)})
        if not 1 <= limit <= customers.MAX_CHANGES_PAGE:
            return _json(400, {"error": f"limit must be between 1 and {customers.MAX_CHANGES_PAGE}"})
        return _json(200, self.service.customer_changes(kunnr, after=after, limit=limit))

    def _wrong_answers(self, environ: WSGIEnvironment, method: str) -> Reply:
        if method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                rules = self.wrong_answers.replace(json.loads(environ["wsgi.input"].read(min(length, 65536)) or b"{}"))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                return _json(400, {"error": str(exc)})
            log.info("wrong answers changed", rules=rules)
            return _json(200, rules)
        if method != "GET":
            return Reply(405, b"GET or POST\n", headers=(("Allow", "GET, POST"),))
        return _json(200, self.wrong_answers.as_json())


def _cut_short(operation: str | None) -> bytes:
    """A SOAP answer cut off in the middle of a tag: HTTP 200, but not well-formed XML."""
    name = operation or "Unknown"
    return (
        f"<?xml version='1.0' encoding='UTF-8'?>\n<soap:Envelope xmlns:soap=\"{soap.SOAP_ENV}\"><soap:Body>"
        f'<erp:{name}Response xmlns:erp="urn:crm-esb:erp:v1"><'
    ).encode()


__all__ = ["DropConnection", "ErpApp", "Reply"]
