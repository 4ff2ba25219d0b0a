"""The envelope's ``traceparent``: a well-formed one is kept, a malformed one dropped, an over-long one refused."""

from __future__ import annotations

import json

import pytest

from canonical_model.envelope import MAX_TRACE_HEADER, Envelope
from canonical_model.errors import InvalidMessage
from canonical_model.trace_context import context_from, valid_traceparent

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _with(traceparent: object) -> bytes:
    body = json.loads(Envelope.new(type="order.placed", source="tests", data={}).to_bytes())
    body["traceparent"] = traceparent
    return json.dumps(body).encode()


def test_a_well_formed_traceparent_is_kept() -> None:
    assert Envelope.from_bytes(_with(GOOD)).traceparent == GOOD
    assert context_from(GOOD) is not None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        GOOD.upper(),  # W3C: lower-case hex only
        "01" + GOOD[2:],  # a version we do not know the format of
        "00-" + "0" * 32 + GOOD[35:],  # all-zero trace id
        GOOD[:36] + "0" * 16 + "-01",  # all-zero span id
        GOOD + "-extra",
        GOOD + "\n",
    ],
)
def test_a_malformed_traceparent_is_dropped_not_the_message(bad: str) -> None:
    assert valid_traceparent(bad) is None
    assert Envelope.from_bytes(_with(bad)).traceparent is None
    assert context_from(bad) is None


def test_an_over_long_traceparent_is_refused_like_any_attribute() -> None:
    with pytest.raises(InvalidMessage):
        Envelope.from_bytes(_with("x" * (MAX_TRACE_HEADER + 1)))
