"""Issue 6 (tester F12): every way the broker connection can fail at start ends within the configured
attempts with one line naming the URL, password masked.

The bound is ``attempts x connect_timeout + (attempts - 1) x retry_delay`` seconds (the issue: "exit
non-zero after the configured connection attempts (at most 15 s)"); the command may take 2 s more for
its own start-up. A port that accepts TCP but never speaks AMQP used to raise pika's
``AMQPConnectorStackTimeout``, which is outside ``pika.exceptions.AMQPError``: a 46-line traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.rabbitmq.transport import BrokerUnreachable, RabbitMQTransport

ATTEMPTS, CONNECT_TIMEOUT, RETRY_DELAY = 2, 1.0, 0.2
BOUND = ATTEMPTS * CONNECT_TIMEOUT + (ATTEMPTS - 1) * RETRY_DELAY  # seconds


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (at most 32) and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    held: list[socket.socket] = []

    def accept() -> None:
        while len(held) < 32:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()
    for connection in held:
        connection.close()


def _esb(args: list[str], cwd: Path, url: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")} | {
        "ESB_TRANSPORT": "rabbitmq",
        "ESB_RABBITMQ_URL": url,
        "ESB_RABBITMQ_CONNECTION_ATTEMPTS": str(ATTEMPTS),
        "ESB_RABBITMQ_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "ESB_RABBITMQ_RETRY_DELAY": str(RETRY_DELAY),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "esb", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - started


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed): every connect is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: what the same command may take beyond its run against a refused port: the run-to-run variation of its
#: own start-up (imports, the CRM database, the demo's ERP process) on a loaded 2-core machine
START_UP_JITTER = 2.0


@pytest.mark.parametrize(
    ("command", "scheme"),
    [
        (["worker"], "amqp"),
        # the demo starts the reference ERP (a process of its own) before it connects, and says so on
        # stderr first; amqps: here the TLS handshake is what stalls
        (["demo", "--timeout", "5"], "amqps"),
    ],
)
def test_a_port_that_never_speaks_amqp_is_one_line_within_the_bound(
    silent_port: int, refused_port: int, tmp_path: Path, command: list[str], scheme: str
) -> None:
    # The command's own start-up, measured in the same run: the same command against a refused port,
    # which fails each attempt at once (its run is start-up + the retry delays); a fixed allowance
    # failed under load (7.3 s against 2.2 s + 5 s).
    (tmp_path / "refused").mkdir()
    _, baseline = _esb(command, tmp_path / "refused", f"{scheme}://guest:s3cret-mq@127.0.0.1:{refused_port}/%2F")
    start_up = baseline - (ATTEMPTS - 1) * RETRY_DELAY + START_UP_JITTER
    (tmp_path / "silent").mkdir()
    done, took = _esb(command, tmp_path / "silent", f"{scheme}://guest:s3cret-mq@127.0.0.1:{silent_port}/%2F")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if command[0] == "demo":
        # its two progress lines ("starting the reference ERP ...", "ERP listening at ..."), then the error
        assert lines[0].startswith("starting the reference ERP") and lines[1].startswith("ERP listening")
        lines = lines[2:]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert f"cannot connect to RabbitMQ at {scheme}://guest:***@127.0.0.1:{silent_port}/%2F" in lines[0]
    assert f"after {ATTEMPTS} attempts: no AMQP handshake within 1 s per attempt" in lines[0]
    assert "s3cret" not in done.stderr
    assert took < BOUND + start_up, (
        f"took {took:.1f} s, bound {BOUND} s + {start_up:.1f} s start-up (refused port: {baseline:.1f} s)"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("amqp://guest:s3cret-mq@127.0.0.1:1/%2F", "Connection refused"),
        ("amqps://guest:s3cret-mq@127.0.0.1:5672/%2F", "SSLError"),  # TLS against the broker's plain port
        ("amqp://guest:s3cret-mq@no-such-broker.invalid/%2F", "gaierror"),  # DNS
        # a stalled handshake (amqp and amqps): test_a_port_that_never_speaks_amqp_is_one_line_within_the_bound
    ],
)
def test_every_way_to_fail_to_connect_is_broker_unreachable(rabbitmq_url: str, url: str, reason: str) -> None:
    transport = RabbitMQTransport(
        url,
        connection_attempts=ATTEMPTS,
        retry_delay=RETRY_DELAY,
        socket_timeout=CONNECT_TIMEOUT,
        stack_timeout=CONNECT_TIMEOUT,
    )
    try:
        with pytest.raises(BrokerUnreachable) as caught:
            transport.message_count("anything")
    finally:
        transport.close()
    message = str(caught.value)
    assert "\n" not in message and reason in message and "s3cret" not in message
    assert url.replace("s3cret-mq", "***") in message
