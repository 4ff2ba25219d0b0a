"""Helpers of the embedded transport's tests (test_embedded_*.py): topologies, waiting, consumers in threads.

No test measures time: waits have generous limits only so that a broken transport fails instead of hanging.
"""

from __future__ import annotations

from connectors.base import Delivery, QueueSpec, Topology, Transport
from tests.connectors.transport_helpers import WAIT as WAIT
from tests.connectors.transport_helpers import consuming as consuming
from tests.connectors.transport_helpers import get_eventually as get_eventually
from tests.connectors.transport_helpers import topology_of
from tests.connectors.transport_helpers import wait_for as wait_for


def topology(name: str, *specs: QueueSpec, subscribers: tuple[QueueSpec, ...] = ()) -> Topology:
    """``topology_of`` with one queue ``<name>.orders`` (order.*, delivery limit 3) unless ``specs`` are given."""
    return topology_of(
        name, *(specs or (QueueSpec(f"{name}.orders", ("order.*",), delivery_limit=3),)), subscribers=subscribers
    )


def drain(transport: Transport, queue: str) -> list[Delivery]:
    """Every ready message of ``queue``, acked."""
    taken = []
    while (delivery := transport.get(queue)) is not None:
        delivery.ack()
        taken.append(delivery)
    return taken
