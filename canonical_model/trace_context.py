"""W3C Trace Context in the envelope's ``traceparent`` extension (CloudEvents distributed tracing).

A ``traceparent`` is ``00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`` (version 00, the
only one defined; lower-case; ids not all zeros). One that is not, is ignored: the message is still
handled, its span just starts a new trace. The spans themselves go through the OpenTelemetry API: without
an SDK set up (``opentelemetry.trace.set_tracer_provider``) they are no-ops and nothing is injected.
"""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: the instrumentation scope of every span of crm-esb
TRACER_NAME = "crm-esb"
TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")

_PROPAGATOR = TraceContextTextMapPropagator()
#: the provider ``tracer`` uses instead of the process's global one (tests: ``use_tracer_provider``)
_provider: trace.TracerProvider | None = None


def valid_traceparent(value: object) -> str | None:
    """``value`` if it is a well-formed version-00 ``traceparent``, else None."""
    return value if isinstance(value, str) and TRACEPARENT.fullmatch(value) else None


def tracer() -> trace.Tracer:
    """crm-esb's tracer from the process's tracer provider (looked up per call: a provider set later counts)."""
    return trace.get_tracer(TRACER_NAME, tracer_provider=_provider)


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Make ``tracer`` use ``provider`` (None: the global one again). OpenTelemetry's global provider can be
    set only once per process; tests set theirs here and take it back, so later tests run untraced."""
    global _provider
    _provider = provider


def context_from(traceparent: str | None) -> Context | None:
    """The context whose parent is the span named by ``traceparent``; None (the current one) when there is none."""
    if valid_traceparent(traceparent) is None:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def traceparent_of(span: trace.Span) -> str | None:
    """The ``traceparent`` naming ``span`` as the parent; None for a span that is not recorded (no SDK)."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return valid_traceparent(carrier.get("traceparent"))


__all__ = [
    "TRACEPARENT",
    "TRACER_NAME",
    "context_from",
    "traceparent_of",
    "tracer",
    "use_tracer_provider",
    "valid_traceparent",
]
