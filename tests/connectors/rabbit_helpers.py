"""Helpers of the RabbitMQ transport's tests (real broker): topologies in a namespace of their own,
consumers in threads, and the broker's own tools to find and close our connections.

No helper measures time: waits have generous limits only so that a broken transport fails instead of hanging.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from connectors.base import DeliveryHandler, OutgoingMessage, Topology
from connectors.rabbitmq import RabbitMQTransport
from tests.conftest import missing_service
from tests.connectors.transport_helpers import WAIT as WAIT
from tests.connectors.transport_helpers import consuming as shared_consuming
from tests.connectors.transport_helpers import topology_of as topology_of
from tests.connectors.transport_helpers import wait_for as wait_for


def message(routing_key: str, body: bytes, message_id: str, partition_key: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(routing_key=routing_key, body=body, message_id=message_id, partition_key=partition_key)


@contextmanager
def declared(transport: RabbitMQTransport, topology: Topology) -> Iterator[Topology]:
    transport.declare(topology)
    try:
        yield topology
    finally:
        transport.delete(topology)


@contextmanager
def consuming(
    transport: RabbitMQTransport,
    queue: str,
    handler: DeliveryHandler,
    *,
    prefetch: int = 20,
    concurrency: int = 1,
    stop: threading.Event | None = None,
) -> Iterator[threading.Event]:
    """Consume ``queue`` in a thread for the duration of the block; the thread must end on stop (within the
    transport's own reconnect and close allowances)."""
    with shared_consuming(
        transport, queue, handler, stop=stop, join_timeout=WAIT + 35, prefetch=prefetch, concurrency=concurrency
    ) as stopped:
        yield stopped


def rabbitmqctl(*args: str) -> str:
    """Output of ``rabbitmqctl``; the test skips where it cannot be run (not installed, no access)."""
    if shutil.which("rabbitmqctl") is None:
        missing_service("rabbitmqctl (the broker's own tool)")
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def connections(name_prefix: str) -> dict[str, str]:
    """Our connections on the broker whose connection name starts with ``name_prefix``: pid -> name (the
    pid as ``close_connection`` takes it: the JSON listing gives another form, which it refuses)."""
    found: dict[str, str] = {}
    for line in rabbitmqctl("list_connections", "pid", "client_properties", "-q").splitlines():
        pid, _, properties = line.partition("\t")
        named = re.search(r'\{"connection_name","((?:[^"\\]|\\.)*)"\}', properties)
        if named and named.group(1).startswith(name_prefix):
            found[pid.strip()] = named.group(1)
    return found


def close_connections(name_prefix: str) -> int:
    """Make the broker close our connections named ``name_prefix...`` (only ours: the broker is shared)."""
    closed = 0
    for pid in connections(name_prefix):
        done = subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "closed by a test"], capture_output=True, text=True, timeout=60
        )
        # it may answer 69 ("Error:") although the connection is closed: the broker's list says
        if done.returncode == 0 or pid not in connections(name_prefix):
            closed += 1
        else:
            print(f"rabbitmqctl close_connection {pid}: {done.returncode} {done.stdout[:300]} {done.stderr[:300]}")
    return closed
