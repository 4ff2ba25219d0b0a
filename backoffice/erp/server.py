"""Build the ERP (database, contract, service, app) and serve it with waitress."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

import structlog
from waitress.channel import ClientDisconnected
from waitress.server import create_server

from backoffice.erp import SERVICE_PATH
from backoffice.erp.app import DropConnection, ErpApp
from backoffice.erp.contract import Contract
from backoffice.erp.limits import RequestLimits
from backoffice.erp.misbehaviour import FaultSettings, Misbehaviour
from backoffice.erp.service import ErpService
from backoffice.erp.store import ErpDatabase, create_schema, is_new, open_engine, seed_materials

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    db: Path
    host: str = "127.0.0.1"
    port: int = 0
    seed: bool = False
    faults: FaultSettings = field(default_factory=FaultSettings)
    user: str | None = None
    password: str | None = None
    threads: int = 8
    #: what one request may cost at most (body size, elements, depth, attributes per element)
    limits: RequestLimits = field(default_factory=RequestLimits)


def configure_logging() -> None:
    # stdout carries exactly one line (the address); everything else goes to stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def build_app(options: ServerOptions) -> ErpApp:
    engine = open_engine(options.db, pool_size=options.threads)
    new = is_new(engine)
    create_schema(engine)
    if new or options.seed:
        added = seed_materials(engine)
        log.info("seeded", materials=added, new_database=new)
    credentials = (options.user, options.password or "") if options.user else None
    contract = Contract()
    return ErpApp(
        contract,
        ErpService(ErpDatabase(engine)),
        misbehaviour=Misbehaviour(options.faults, operations=contract.operations),
        credentials=credentials,
        limits=options.limits,
        # a request held by an injected timeout takes a thread: half of them stay free for the others
        max_held=max(1, options.threads // 2),
    )


class _Waitress:
    """The app as waitress runs it: ``DropConnection`` becomes waitress's own ``ClientDisconnected``,
    on which it closes the connection without writing anything (no status line, no body)."""

    def __init__(self, app: ErpApp) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self.app(environ, start_response)
        except DropConnection:
            raise ClientDisconnected from None


def serve(options: ServerOptions) -> None:
    """Serve until killed; prints ``ERP listening on http://HOST:PORT/erp`` once the socket is bound."""
    app = build_app(options)
    server = create_server(
        _Waitress(app),
        host=options.host,
        port=options.port,
        threads=options.threads,
        ident="crm-esb-erp",
        # waitress buffers a whole body before the app sees it: refuse absurd ones already there
        # (up to twice the limit the app reads the size and answers 413 with a SOAP fault itself)
        max_request_body_size=2 * options.limits.max_body_bytes,
    )
    # one host and port given: a single TCP server (the stubs only promise the union)
    host, port = str(getattr(server, "effective_host", options.host)), int(getattr(server, "effective_port", 0))
    app.listen = (host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"ERP listening on http://{shown}:{port}{SERVICE_PATH}", flush=True)
    log.info("serving", host=host, port=port, db=str(options.db), auth=options.user is not None)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


__all__ = ["ServerOptions", "build_app", "configure_logging", "serve"]
