"""A total time limit for one HTTP exchange with the ERP (connect, send, headers, whole answer).

requests' timeouts are per socket operation: an answer dripped one byte a second never trips a
read timeout of five seconds (LIBRARY-NOTES). A ``Deadline`` bounds the whole exchange instead:

- the (connect, read) timeouts handed to requests are clipped to the time left;
- a watchdog shuts the exchange's socket down when the deadline passes, so a read blocked anywhere
  (status line, headers, a body read waiting for its chunk) returns at once; the transport then
  reports ``CallDeadlineExceeded`` whatever error the cut produced;
- the transport's read loop checks the deadline between chunks too.

The socket is found through the connection classes of ``DeadlineAdapter``: a connection that
starts a request while a deadline is active in its thread registers with that deadline.
Thread-safety: a ``Deadline`` belongs to one call in one thread; only the watchdog runs elsewhere,
and the two meet under the deadline's lock. One watchdog thread per process serves every deadline:
a ``threading.Timer`` per call started and ended a thread for every ERP call.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
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


class _Watchdog:
    """One daemon thread that expires the deadlines of every thread of the process, earliest first.

    A finished deadline stays in the heap until it reaches the front, where it is dropped unseen; the
    thread sleeps until the earliest deadline still running (calls end long before their deadlines,
    so it wakes about once per deadline length, not once per call).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._pid = 0

    def watch(self, deadline: Deadline) -> None:
        with self._condition:
            if self._pid != os.getpid():  # first use, or a forked child: the thread is not there
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="erp-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (deadline.end, next(self._order), deadline))
            if self._heap[0][2] is deadline:  # earlier than what the thread sleeps for
                self._condition.notify()

    def _run(self) -> None:
        while True:
            due: list[Deadline] = []
            with self._condition:
                heap = self._heap
                now = time.monotonic()
                while heap and (heap[0][2].finished or heap[0][0] <= now):
                    _, _, deadline = heapq.heappop(heap)
                    if not deadline.finished:
                        due.append(deadline)
                if not due:
                    self._condition.wait(heap[0][0] - now if heap else None)
            for deadline in due:
                deadline.expire()


_WATCHDOG = _Watchdog()


class Deadline:
    """``seconds`` from now for one exchange; ``setting`` names the limit in errors."""

    def __init__(self, seconds: float, setting: str) -> None:
        self.seconds = seconds
        self.setting = setting
        self.end = time.monotonic() + seconds
        self.expired = False
        #: the exchange is over (the watchdog leaves it alone)
        self.finished = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []

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

    def expire(self) -> None:
        """The deadline passed (the watchdog's thread): cut the exchange's connections."""
        with self._lock:
            if self.finished:
                return
            self.expired = True
            for connection in self._connections:
                _cut(connection)

    def __enter__(self) -> Deadline:
        _current.deadline = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = None
        with self._lock:
            self.finished = True
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
