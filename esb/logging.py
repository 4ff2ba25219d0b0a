"""Log setup: one stderr stream, JSON lines or console text, for our logs and everyone else's.

structlog renders our events; the standard library's records (pika, zeep, alembic, warnings)
go through the same renderer via ``structlog.stdlib.ProcessorFormatter``, so with ``json`` every
stderr line is one JSON object. Lines meant for the person at the terminal (the demo's progress,
one-line errors) go through ``status`` / ``error_line``, which follow the same format. stdout
carries only a command's result.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import structlog

LogFormat = Literal["json", "console"]
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: libraries that are chatty at INFO; their problems surface through our own errors
NOISY_LOGGERS = ("zeep", "urllib3", "alembic")
#: pika logs every failed connection attempt at ERROR with a traceback, which our own one-line
#: error (start-up) or reconnect warning (running) already says: its records show at DEBUG only
#: (and CRITICAL ones always)
QUIET_LOGGERS = ("pika",)

_format: LogFormat = "console"


class _EsbHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our stderr handler, told apart from others so that configuring twice replaces it."""


def configure_logging(level: str = "INFO", fmt: LogFormat = "console") -> None:
    """Route structlog and the standard library's logging to stderr in ``fmt`` at ``level``.

    ``level`` is one of ``LEVELS`` (any case); anything else raises ValueError.
    """
    global _format
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level[:40]!r}; choose {', '.join(LEVELS)}")
    _format = fmt
    numeric = logging.getLevelNamesMapping()[name]
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # JSON: the traceback becomes one escaped string field, so it stays one line
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer,
        ],
    )
    handler = _EsbHandler(_StderrProxy())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _EsbHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))
    for quiet in QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL)
    if fmt == "json":
        # a bug's traceback would be printed as plain lines: log it as one JSON line instead
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("esb").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread else None
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    logging.getLogger("esb").critical("uncaught exception in thread %s", thread, exc_info=exc_info)


class _StderrProxy:
    """A stream that writes to whatever ``sys.stderr`` is at the time (tests and tools swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _line(level: str, text: str, fields: dict[str, Any]) -> str:
    if _format == "json":
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")  # as structlog's TimeStamper writes it
        event = {"event": text, **fields, "logger": "esb", "level": level, "timestamp": now}
        return json.dumps(event, default=str, ensure_ascii=False)
    return " ".join([text, *(f"{key}={value}" for key, value in fields.items())])


def use_format(fmt: LogFormat) -> None:
    """Choose how ``status`` and ``error_line`` write, before logging is configured (the CLI's
    ``--log-format`` is read first, so that even an error in the other options comes out in it)."""
    global _format
    _format = fmt


def writes_json() -> bool:
    """Whether ``status`` and ``error_line`` write JSON objects (``--log-format json``)."""
    return _format == "json"


def status(text: str, **fields: Any) -> None:
    """A line for the person at the terminal (progress), whatever the log level: text, or JSON."""
    print(_line("info", text, fields), file=sys.stderr, flush=True)


def error_line(text: str) -> str:
    """A command's one-line error as it goes to stderr: ``Error: text``, or a JSON object."""
    return _line("error", text, {}) if _format == "json" else f"Error: {text}"


__all__ = [
    "LEVELS",
    "NOISY_LOGGERS",
    "QUIET_LOGGERS",
    "LogFormat",
    "configure_logging",
    "error_line",
    "status",
    "use_format",
    "writes_json",
]
