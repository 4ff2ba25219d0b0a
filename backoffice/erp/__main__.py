"""``python -m backoffice.erp serve --host 127.0.0.1 --port 0 --db erp.db [--seed] ...``"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from backoffice.erp import limits
from backoffice.erp.misbehaviour import FaultSettings
from backoffice.erp.server import ServerOptions, configure_logging, serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backoffice.erp", description="The crm-esb reference ERP.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the SOAP 1.1 service until stopped")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8081, help="0 picks a free port (printed on stdout)")
    run.add_argument("--db", type=Path, required=True, help="SQLite file (created if missing)")
    run.add_argument("--seed", action="store_true", help="add the seed materials even if the database exists")
    run.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered with a Server fault")
    run.add_argument("--latency-ms", type=int, default=0, help="delay added to every SOAP request")
    run.add_argument("--outage", action="store_true", help="answer HTTP 503 to every SOAP/WSDL request")
    run.add_argument("--user", help="require HTTP basic auth with this user")
    run.add_argument("--password", help="... and this password (or $ERP_PASSWORD)")
    run.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    bounds = run.add_argument_group("request limits (beyond one: a soap:Client fault, before the request is parsed)")
    bounds.add_argument("--max-body-bytes", type=int, default=limits.DEFAULT_MAX_BODY_BYTES, help="HTTP 413 beyond")
    bounds.add_argument("--max-elements", type=int, default=limits.DEFAULT_MAX_ELEMENTS, help="elements per request")
    bounds.add_argument("--max-depth", type=int, default=limits.DEFAULT_MAX_DEPTH, help="nesting depth")
    bounds.add_argument(
        "--max-attributes", type=int, default=limits.DEFAULT_MAX_ATTRIBUTES, help="attributes per element"
    )
    bounds.add_argument(
        "--max-total-attributes",
        type=int,
        default=limits.DEFAULT_MAX_TOTAL_ATTRIBUTES,
        help="attributes per request (namespace declarations included)",
    )
    return parser


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # let waitress close its sockets and the database pool


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = FaultSettings(args.fault_rate, args.latency_ms, args.outage)
        request_limits = limits.RequestLimits(
            max_body_bytes=args.max_body_bytes,
            max_elements=args.max_elements,
            max_depth=args.max_depth,
            max_attributes=args.max_attributes,
            max_total_attributes=args.max_total_attributes,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    password = args.password if args.password is not None else os.environ.get("ERP_PASSWORD")
    if args.user and not password:
        print("error: --user needs --password (or $ERP_PASSWORD)", file=sys.stderr)
        return 2
    configure_logging()
    signal.signal(signal.SIGTERM, _stop)
    serve(
        ServerOptions(
            db=args.db,
            host=args.host,
            port=args.port,
            seed=args.seed,
            faults=faults,
            user=args.user,
            password=password,
            threads=args.threads,
            limits=request_limits,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
