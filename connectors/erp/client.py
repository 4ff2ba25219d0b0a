"""The ERP connector: the reference ERP's SOAP operations as Python calls returning plain dicts.

Thread-safety: a requests Session is not guaranteed thread-safe, so each thread that uses an
``ErpClient`` gets its own thin zeep client and Session (keep-alive per thread), built on its first
call. The WSDL is fetched and parsed once per ``ErpClient`` (zeep parses on every ``Client()``
given a URL, but accepts a parsed ``Document``), so build one ``ErpClient`` per process and share it.

Nothing is fetched in ``__init__``: a worker starts even while the ERP is down, and the WSDL is
read on the first call (retried like any transport failure).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog
import tenacity
import zeep
import zeep.wsdl
from opentelemetry.trace import SpanKind
from zeep.helpers import serialize_object

from canonical_model.errors import ConnectorTimeout
from canonical_model.trace_context import tracer
from connectors.erp.errors import (
    SYSTEM,
    AnswerOverLimit,
    Call,
    UnconvertibleValue,
    WsdlUnusable,
    never_sent,
    retryable,
    translated,
    unreadable_value,
)
from connectors.erp.raw_answer import (
    AnswerNotReadable,
    answer_text,
    check_well_formed,
    fault_code_scope,
    unconvertible_element,
)
from connectors.erp.results import ChangeBatch, CustomerCreated, MaterialSaved, Record, SalesOrderResult
from connectors.erp.settings import ErpSettings
from connectors.erp.transport import AnswerLimits, ErpTransport, NotSoapAnswer
from connectors.metrics import CallMetrics
from connectors.urls import redact_url

log = structlog.get_logger(__name__)

BINDING = "{urn:crm-esb:erp:v1}ErpBinding"
#: zeep's defaults are not safe enough (LIBRARY-NOTES): no DTD, no entities, no huge trees. Not
#: zeep's forbid_external: in zeep 4.3.3 it refuses every http(s) include, even one next to the
#: WSDL, and lets file:// and plain paths through; ErpTransport.load decides instead (only the
#: configured WSDL and documents under its directory, same scheme, host and port)
ZEEP_SETTINGS = zeep.Settings(
    strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=False, xml_huge_tree=False
)
CORRELATION_HEADER = "X-Correlation-ID"

T = TypeVar("T")

# zeep is not annotated: its entry points, typed once here
_zeep_client: Any = zeep.Client
_zeep_transport: Any = ErpTransport
_zeep_document: Any = zeep.wsdl.Document
_serialize: Any = serialize_object


#: a header value built from input: bounded, printable ASCII only (requests refuses line breaks,
#: http.client anything outside Latin-1)
_HEADER_LIMIT = 128


def header_value(text: str) -> str:
    """``text`` fit for an HTTP header: other characters become ``?``, cut to ``_HEADER_LIMIT``."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text[: _HEADER_LIMIT + 1]).strip()
    return safe if len(safe) <= _HEADER_LIMIT else safe[: _HEADER_LIMIT - 3] + "..."


def _redacted(url: str) -> str:
    """``url`` for a log line: no user name, and no password or secret query parameter (``redact_url``)."""
    parts = urlsplit(redact_url(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class ErpClient:
    """The ERP's SOAP operations; ``metrics``: where each call's duration and error are counted (None: nowhere).

    Every call is a client span (``erp <operation>``), a child of the current one (the route's).
    """

    def __init__(self, settings: ErpSettings, *, metrics: CallMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._document: Any = None  # the parsed WSDL, shared by every thread's zeep client
        self._document_lock = threading.Lock()
        self._local = threading.local()
        # weak: a Session goes away with the thread that owned it
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._sessions_lock = threading.Lock()
        self._log = log.bind(system=SYSTEM, url=_redacted(settings.url))

    # -- customers -------------------------------------------------------------------------

    def create_customer(
        self,
        customer: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> CustomerCreated:
        """Create a customer, idempotent on its EXTREF and on ``idempotency_key`` (1..64 characters, e.g.
        the message id); ``created`` is False when the ERP knew either already (then nothing changed).

        A VERSION in ``customer`` is kept by the ERP and recorded in its change record with the key.
        """
        result = self._call("CreateCustomer", correlation_id, IDEMPOTENCY_KEY=idempotency_key, CUSTOMER=dict(customer))
        return CustomerCreated(kunnr=str(result["KUNNR"]), created=bool(result["CREATED"]))

    def update_customer(
        self,
        customer: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        correlation_id: str | None = None,
    ) -> Record:
        """Change a customer (KUNNR required; elements left out keep their values); returns the customer.

        ``version`` (>= 1, the caller's version of the record) is sent as CUSTOMER.VERSION, over one the
        mapping put there. With ``idempotency_key`` (1..64 characters, e.g. the message id) the ERP applies
        the change once: a repeat answers the current customer. The ERP keeps and records the version;
        it never refuses an older one (applying versions in order is the caller's job).
        """
        record = dict(customer)
        if version is not None:
            record["VERSION"] = version
        answer = self._call("UpdateCustomer", correlation_id, IDEMPOTENCY_KEY=idempotency_key, CUSTOMER=record)
        return _record(answer, "CUSTOMER")

    def get_customer(self, kunnr: str, *, correlation_id: str | None = None) -> Record:
        return _record(self._call("GetCustomer", correlation_id, KUNNR=kunnr), "CUSTOMER")

    def customers_changed_since(
        self, since_seq: int, max_rows: int = 500, *, correlation_id: str | None = None
    ) -> ChangeBatch:
        return self._changed("GetCustomersChangedSince", "CUSTOMERS", "CUSTOMER", since_seq, max_rows, correlation_id)

    def credit_status(self, kunnr: str, *, correlation_id: str | None = None) -> Record:
        """KUNNR, WAERS, KLIMK, SAUFT, SKFOR, OBLIG, AVAIL, CRBLK."""
        return _record(self._call("GetCreditStatus", correlation_id, KUNNR=kunnr), "CREDIT_STATUS")

    # -- materials -------------------------------------------------------------------------

    def list_materials(self, *, correlation_id: str | None = None) -> list[Record]:
        return _rows(self._call("ListMaterials", correlation_id), "MATERIALS", "MATERIAL")

    def materials_changed_since(
        self, since_seq: int, max_rows: int = 500, *, correlation_id: str | None = None
    ) -> ChangeBatch:
        return self._changed("GetMaterialsChangedSince", "MATERIALS", "MATERIAL", since_seq, max_rows, correlation_id)

    def save_material(self, material: Mapping[str, Any], *, correlation_id: str | None = None) -> MaterialSaved:
        """Create or change a material by MATNR (all elements but LVORM required)."""
        result = self._call("SaveMaterial", correlation_id, MATERIAL=dict(material))
        return MaterialSaved(material=result["MATERIAL"], created=bool(result["CREATED"]))

    # -- sales orders, invoices, payments --------------------------------------------------

    def create_sales_order(
        self,
        idempotency_key: str,
        header: Mapping[str, Any],
        items: Sequence[Mapping[str, Any]],
        *,
        correlation_id: str | None = None,
    ) -> SalesOrderResult:
        """Create a sales order; the same ``idempotency_key`` again returns the first order (created False).

        The answer is read leniently: once the ERP has accepted an order, an element missing from or
        added to its answer (WAERS left out, ...) must not make the answer unreadable and the call
        retried forever; the order's values come back as the ERP sent them (None where missing),
        and the flow decides what it can use. A value zeep cannot convert at all (NETWR ``1,250.00``)
        makes the whole answer be read by hand instead: then every value is the ERP's text.
        """
        with _lenient_answers():
            result = self._call(
                "CreateSalesOrder",
                correlation_id,
                by_hand=True,
                lenient=True,
                IDEMPOTENCY_KEY=idempotency_key,
                HEADER=dict(header),
                ITEMS={"ITEM": [dict(item) for item in items]},
            )
        answer = result if isinstance(result, dict) else {}
        order = answer.get("SALES_ORDER")
        return SalesOrderResult(order=order if isinstance(order, dict) else {}, created=_flag(answer.get("CREATED")))

    def get_sales_order(self, vbeln: str, *, correlation_id: str | None = None) -> Record:
        return _record(self._call("GetSalesOrder", correlation_id, VBELN=vbeln), "SALES_ORDER")

    def sales_orders_changed_since(
        self, since_seq: int, max_rows: int = 500, *, correlation_id: str | None = None
    ) -> ChangeBatch:
        return self._changed(
            "GetSalesOrdersChangedSince", "SALES_ORDERS", "SALES_ORDER", since_seq, max_rows, correlation_id
        )

    def get_invoice(self, vbeln: str, *, correlation_id: str | None = None) -> Record:
        return _record(self._call("GetInvoice", correlation_id, VBELN=vbeln), "INVOICE")

    def invoices_changed_since(
        self, since_seq: int, max_rows: int = 500, *, correlation_id: str | None = None
    ) -> ChangeBatch:
        return self._changed("GetInvoicesChangedSince", "INVOICES", "INVOICE", since_seq, max_rows, correlation_id)

    def payments_changed_since(
        self, since_seq: int, max_rows: int = 500, *, correlation_id: str | None = None
    ) -> ChangeBatch:
        return self._changed("GetPaymentsChangedSince", "PAYMENTS", "PAYMENT", since_seq, max_rows, correlation_id)

    def post_payment(
        self, vbeln: str, amount: Decimal, posting_date: date, *, correlation_id: str | None = None
    ) -> Record:
        """Simulate an incoming payment for invoice ``vbeln``; returns the PAYMENT.

        Not idempotent: retried only when the request certainly did not reach the ERP.
        """
        answer = self._call(
            "PostPayment", correlation_id, idempotent=False, VBELN=vbeln, DMBTR=amount, BUDAT=posting_date
        )
        return _record(answer, "PAYMENT")

    # -- plumbing --------------------------------------------------------------------------

    def _changed(
        self, operation: str, container: str, element: str, since: int, max_rows: int, correlation_id: str | None
    ) -> ChangeBatch:
        """One page of changes after ``since``; a page over ``max_answer_bytes`` or ``max_answer_elements``
        is asked again with half the rows.

        Down to one row: a single record over the limit raises ``AnswerOverLimit`` naming it as the
        record after CHSEQ ``since`` (its key is in the answer we refused to read). At most
        log2(max_rows) + 1 calls, each within its own deadline, and all of them within one
        ``retry_budget``: past it, ``ConnectorTimeout`` (a server that answers every page slowly and too
        large must not hold the caller for the sum of all their deadlines).
        """
        rows = max_rows
        started = time.monotonic()
        # a page whose value zeep cannot convert is read by hand (values as text) where the caller
        # keeps a bad record aside: the material feed (issue 6 case 7)
        by_hand = operation in _PAGES_READ_BY_HAND
        while True:
            try:
                result = self._call(operation, correlation_id, by_hand=by_hand, SINCE_SEQ=since, MAX_ROWS=rows)
            except AnswerOverLimit as exc:
                if rows <= 1:
                    record = f"{element} after CHSEQ {since}"
                    raise AnswerOverLimit(
                        f"ERP {record} alone is over {exc.setting}={exc.limit}: {exc.message}",
                        limit=exc.limit,
                        record=record,
                        setting=exc.setting,
                        system=exc.system,
                        operation=exc.operation,
                        correlation_id=exc.correlation_id,
                    ) from exc
                spent = time.monotonic() - started
                if spent >= self.settings.retry_budget:
                    raise ConnectorTimeout(
                        f"ERP pages of {operation} stayed over max_answer_bytes={exc.limit} down to {rows} rows, "
                        f"and asking again with fewer would pass retry_budget={self.settings.retry_budget:g} s "
                        f"(spent {spent:.1f} s)",
                        system=exc.system,
                        operation=exc.operation,
                        correlation_id=exc.correlation_id,
                    ) from exc
                rows = max(1, rows // 2)
                self._log.warning(
                    "erp page over its answer limit; asking fewer rows",
                    operation=operation,
                    since=since,
                    rows=rows,
                    limit=exc.setting,
                )
                continue
            last_seq = _sequence(result.get("LAST_SEQ"))
            if last_seq is None:  # zeep turns an unreadable integer into None; by hand it is text
                raise unreadable_value(
                    "LAST_SEQ", _text(result.get("LAST_SEQ")), "not a sequence number", Call(operation, correlation_id)
                )
            return ChangeBatch(
                items=_rows(result.get(container), container, element),
                last_seq=last_seq,
                more=_flag(result.get("MORE")),
                max_rows=rows,
            )

    def _call(
        self,
        operation: str,
        correlation_id: str | None,
        *,
        idempotent: bool = True,
        by_hand: bool = False,
        lenient: bool = False,
        **params: Any,
    ) -> Any:
        """One operation: retried on transport failures, errors translated, the answer as a plain dict.

        ``by_hand``: when zeep cannot convert a value of the answer, return the answer read by hand
        (``raw_answer.answer_text``: every value the ERP's text) instead of raising
        ``UnreadableAnswerValue``. ``lenient``: zeep's schema checks are off (``_lenient_answers``); the
        answer must still be well-formed XML, else it is an unreadable answer (transient).
        """
        bound = self._log.bind(operation=operation, correlation_id=correlation_id)
        # every attempt's deadline is clipped to what is left of the budget (the transport reads it)
        not_after = time.monotonic() + self.settings.retry_budget

        def attempt() -> Any:
            self._local.not_after = not_after  # the WSDL read on a first call is inside the budget too
            service, session = self._service()
            transport = self._local.transport
            transport.not_after = not_after
            transport.last_answer = None
            if correlation_id:  # for the ERP's log; the session is this thread's own
                session.headers[CORRELATION_HEADER] = header_value(correlation_id)
            else:
                session.headers.pop(CORRELATION_HEADER, None)
            try:
                answer = getattr(service, operation)(**params)
                if lenient:  # zeep's lenient mode lets lxml repair an answer cut short: refuse it here
                    check_well_formed(transport.last_answer)
                return answer
            except zeep.exceptions.Fault as exc:
                # the fault code's prefix is resolved where it is written, not through <detail>
                exc.code_scope = fault_code_scope(transport.last_answer)  # type: ignore[attr-defined]
                raise
            except (ArithmeticError, ValueError) as exc:
                return self._unconvertible(exc, transport.last_answer, by_hand, bound)
            finally:
                transport.last_answer = None  # up to max_answer_bytes: not kept beyond the attempt

        started = time.perf_counter()
        error: BaseException | None = None
        with tracer().start_as_current_span(
            f"erp {operation}", kind=SpanKind.CLIENT, attributes={"rpc.system": "soap", "rpc.method": operation}
        ):
            try:
                with translated(operation, correlation_id, params):
                    answer = self._retrying(attempt, retryable if idempotent else never_sent, bound, not_after)
            except BaseException as exc:
                error = exc
                raise
            finally:
                if self.metrics is not None:
                    self.metrics.called(operation, time.perf_counter() - started, error)
        bound.debug("erp call done")
        if isinstance(answer, _ReadByHand):
            return answer.value
        return _serialize(answer, target_cls=dict)

    def _unconvertible(
        self, exc: ArithmeticError | ValueError, content: bytes | None, by_hand: bool, bound: Any
    ) -> Any:
        """zeep raised while converting the answer ``content``: the answer read by hand, or ``UnconvertibleValue``.

        Anything else (no answer read in this attempt, a ValueError from outside zeep's value
        conversion) is re-raised as it is.
        """
        found = unconvertible_element(exc.__traceback__)
        if content is None or (found is None and not isinstance(exc, ArithmeticError)):
            raise exc
        path, text = found or ("(unknown element)", None)
        reason = f"not a valid value for its type ({type(exc).__name__})"
        if by_hand:
            try:
                value = answer_text(content)
            except AnswerNotReadable as unreadable:
                raise UnconvertibleValue(path, text, f"{reason}; {unreadable}") from exc
            bound.warning("erp answer read by hand: zeep cannot convert a value", field=path, value=_clipped(text))
            return _ReadByHand(value)
        raise UnconvertibleValue(path, text, reason) from exc

    def _retrying(
        self, attempt: Callable[[], T], retry_on: Callable[[BaseException], bool], bound: Any, not_after: float
    ) -> T:
        settings = self.settings
        backoff = tenacity.wait_exponential(multiplier=settings.retry_wait, max=settings.retry_wait_max)

        def wait(state: tenacity.RetryCallState) -> float:
            # a proxy's Retry-After (429/503) is honoured: never retried sooner than it asks
            seconds = float(backoff(state))
            asked = _asked_wait(state)
            return max(seconds, asked) if asked is not None else seconds

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            bound.warning("erp call failed; retrying", attempt=state.attempt_number, error=repr(error))

        retrying = tenacity.Retrying(
            # whichever comes first; an attempt started late is clipped by the transport to the budget
            stop=tenacity.stop_any(
                tenacity.stop_after_attempt(settings.retries),
                tenacity.stop_after_delay(settings.retry_budget),
                _AsksBeyondBudget(not_after),
            ),
            wait=wait,
            retry=tenacity.retry_if_exception(retry_on),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _service(self) -> tuple[Any, requests.Session]:
        """This thread's zeep service proxy (address forced to ``settings.url``) and its Session."""
        service = getattr(self._local, "service", None)
        if service is None:
            settings = self.settings
            session = self._new_session()
            transport = self._transport(session)
            transport.not_after = getattr(self._local, "not_after", None)
            try:
                client: Any = _zeep_client(self._parsed_wsdl(transport), transport=transport, settings=ZEEP_SETTINGS)
            except BaseException:
                session.close()
                raise
            service = client.create_service(BINDING, settings.url)
            self._local.client, self._local.service, self._local.session = client, service, session
            self._local.transport = transport
            with self._sessions_lock:
                self._sessions.add(session)
            self._log.info("erp client ready", wsdl=_redacted(settings.wsdl_url))
        return service, self._local.session

    def probe(self, timeout: float = 2.0) -> None:
        """Raise unless the ERP answers an HTTP GET of its WSDL within ``timeout`` seconds (each of connect
        and read; the answer's body is not read) with a status below 500 other than 401 and 403: the
        readiness check of ``/readyz`` (a refused login fails every call, as an ERP that is down does).
        Raises ``requests.RequestException`` or ``ConnectionError`` naming the status."""
        with self._new_session() as session:
            answer = session.get(self.settings.wsdl_url, timeout=(timeout, timeout), stream=True)
            answer.close()
        if answer.status_code in (401, 403):
            raise ConnectionError(f"the ERP answered HTTP {answer.status_code} (check the ERP user and password)")
        if answer.status_code >= 500:
            raise ConnectionError(f"the ERP answered HTTP {answer.status_code}")

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # requests reads the proxy and CA bundle variables of the environment again on every request (a walk
        # over os.environ: a tenth of the order route's CPU); they are read once here, for the ERP's URL (its
        # WSDL is under it), and requests no longer looks (nor at ~/.netrc: the ERP's user is a setting)
        environment = session.merge_environment_settings(self.settings.url, {}, None, None, None)
        session.proxies.update(environment["proxies"])
        session.verify = environment["verify"]
        session.trust_env = False
        if self.settings.username is not None:
            password = self.settings.password.get_secret_value() if self.settings.password else ""
            session.auth = (self.settings.username, password)
        return session

    def _transport(self, session: requests.Session) -> Any:
        settings = self.settings
        limits = AnswerLimits(
            max_answer_bytes=settings.max_answer_bytes,
            max_answer_elements=settings.max_answer_elements,
            max_document_bytes=settings.max_wsdl_bytes,
            call_deadline=settings.call_deadline,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.operation_timeout,
            wsdl_url=settings.wsdl_url,
        )
        return _zeep_transport(session=session, limits=limits)

    def _parsed_wsdl(self, transport: Any) -> Any:
        """The WSDL, downloaded and parsed on first use only (a failure is retried by the caller)."""
        with self._document_lock:
            if self._document is None:
                document = _zeep_document(self.settings.wsdl_url, transport, settings=ZEEP_SETTINGS)
                if BINDING not in document.bindings:
                    # a proxy's HTML page or an empty WSDL parses without error: not kept, the next call reads again
                    what = transport.last_document or "the document"
                    raise WsdlUnusable(
                        f"{_redacted(self.settings.wsdl_url)} gave {what} without binding {BINDING}", what=what
                    )
                self._document = document
            return self._document

    def close(self) -> None:
        """Close every thread's Session; a later call builds new ones."""
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions), weakref.WeakSet()
        for session in sessions:
            session.close()
        self._local = threading.local()

    def __enter__(self) -> ErpClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def _lenient_answers() -> Iterator[None]:
    """zeep's schema checks off for this thread's calls inside (zeep keeps the override thread-local);
    the hardening (no DTD, no entities, nothing external) stays on."""
    with ZEEP_SETTINGS(strict=False):
        yield


#: change feeds whose page is read by hand when zeep cannot convert a value (the caller keeps bad records aside)
_PAGES_READ_BY_HAND = frozenset({"GetMaterialsChangedSince"})
#: characters of an answer value in a log line
_LOGGED_VALUE = 80


def _asked_wait(state: tenacity.RetryCallState) -> float | None:
    """The seconds a failed attempt's ``Retry-After`` asked for, if it had one."""
    error = state.outcome.exception() if state.outcome else None
    return error.retry_after if isinstance(error, NotSoapAnswer) else None


class _AsksBeyondBudget(tenacity.stop.stop_base):
    """Stop when a ``Retry-After`` asks for more than the retry budget leaves: waiting would only time out."""

    def __init__(self, not_after: float) -> None:
        self.not_after = not_after

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        asked = _asked_wait(retry_state)
        return asked is not None and asked >= self.not_after - time.monotonic()


class _ReadByHand:
    """An answer read by hand (``raw_answer.answer_text``): returned as it is, not through zeep's serializer."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value


def _clipped(text: str | None) -> str | None:
    return text if text is None or len(text) <= _LOGGED_VALUE else text[:_LOGGED_VALUE] + "...[truncated]"


def _text(value: Any) -> str | None:
    return None if value is None else _clipped(str(value))


def _flag(value: Any) -> bool:
    """An xsd:boolean as zeep gives it (bool) or as text read by hand (``true``/``1``)."""
    if isinstance(value, str):
        return value.strip() in ("true", "1")
    return bool(value)


def _sequence(value: Any) -> int | None:
    """A change sequence number (zeep's int, or text read by hand), None when it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


# zeep unwraps answers holding a single element (GetCustomerResponse -> the CUSTOMER itself, and
# ListMaterialsResponse -> the MATERIAL list): these two accept the wrapped and the unwrapped shape.


def _record(value: Any, element: str) -> Record:
    if isinstance(value, dict) and set(value) == {element}:
        value = value[element]
    if not isinstance(value, dict):
        raise TypeError(f"unexpected {element} from zeep: {type(value).__name__}")
    return value


def _rows(value: Any, container: str, element: str) -> list[Record]:
    if isinstance(value, dict) and set(value) == {container}:
        value = value[container]
    if isinstance(value, dict):
        value = value.get(element)
    if isinstance(value, dict):  # read by hand: a single record is not a list
        value = [value]
    return list(value or [])


__all__ = ["BINDING", "ZEEP_SETTINGS", "ErpClient"]
