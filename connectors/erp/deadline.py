"""A total time limit for one HTTP exchange with the ERP (connect, send, headers, whole answer).

requests' timeouts are per socket operation: an answer dripped one byte a second never trips a
read timeout of five seconds (LIBRARY-NOTES). A ``Deadline`` bounds the whole exchange instead:

- the (connect, read) timeouts handed to requests are clipped to the time left;
- a timer shuts the exchange's socket down when the deadline passes, so a read blocked anywhere
  (status line, headers, a body read waiting for its chunk) returns at once; the transport then
  reports ``CallDeadlineExceeded`` whatever error the cut produced;
- the transport's read loop checks the deadline between chunks too.

The socket is found through the connection classes of ``DeadlineAdapter``: a connection that
starts a request while a deadline is active in its thread registers with that deadline.
Thread-safety: a ``Deadline`` belongs to one call in one thread; only its timer runs elsewhere,
and the two meet under its lock.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

#: smallest timeout handed to requests: zero would mean "no timeout" to some layers
_MIN_TIMEOUT = 0.001

_current = threading.local()


class CallDeadlineExceeded(requests.Timeout):
    """No complete answer within the deadline; ``seconds`` is the limit, ``setting`` its name."""

    def __init__(self, seconds: float, setting: str) -> None:
        super().__init__(f"no complete answer within {seconds:g} s ({setting})")
        self.seconds = seconds
        self.setting = setting


class Deadline:
    """``seconds`` from now for one exchange; ``setting`` names the limit in errors."""

    def __init__(self, seconds: float, setting: str) -> None:
        self.seconds = seconds
        self.setting = setting
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def timeouts(self, connect: float, read: float) -> tuple[float, float]:
        """requests' (connect, read) timeouts, each clipped to the time left."""
        left = max(self.remaining(), _MIN_TIMEOUT)
        return min(connect, left), min(read, left)

    def check(self) -> None:
        """Raise ``CallDeadlineExceeded`` once the deadline has passed."""
        if self.expired or self.remaining() <= 0:
            raise CallDeadlineExceeded(self.seconds, self.setting)

    def attach(self, connection: Any) -> None:
        """Cut ``connection`` when the deadline passes (at once if it has)."""
        with self._lock:
            if self.expired:
                _cut(connection)
            else:
                self._connections.append(connection)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _cut(connection)

    def __enter__(self) -> Deadline:
        self._timer.start()
        _current.deadline = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = None
        self._timer.cancel()
        with self._lock:
            self._connections.clear()


def _cut(connection: Any) -> None:
    sock = connection if isinstance(connection, socket.socket) else getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watch(connection: Any) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(connection)


@contextlib.contextmanager
def reported(deadline: Deadline) -> Iterator[None]:
    """Whatever the block raises after the deadline cut its socket, report the deadline."""
    try:
        yield
    except CallDeadlineExceeded:
        raise
    except Exception as exc:
        if deadline.expired:
            raise CallDeadlineExceeded(deadline.seconds, deadline.setting) from exc
        raise
    if deadline.expired:  # the cut can look like a clean end of an answer without Content-Length
        raise CallDeadlineExceeded(deadline.seconds, deadline.setting)


class _Watched:
    """Mixin for urllib3's connection classes: each exchange's socket is watched by its deadline."""

    sock: Any

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        # the socket itself: http.client hands it to the response and forgets it (sock = None)
        # when the answer ends with the connection (HTTP/1.0, Connection: close)
        if self.sock is not None:
            _watch(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections a ``Deadline`` can cut (mount it for http:// and https://)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


__all__ = ["CallDeadlineExceeded", "Deadline", "DeadlineAdapter", "reported"]
