"""The RabbitMQ transport: quorum queues, pipelined publisher confirms, manual acks.

pika allows one connection per thread, so this transport holds three kinds:

- the publisher's SelectConnection in its own I/O thread, shared by every publishing thread
  (see ``publisher``);
- one BlockingConnection per ``consume`` call, in the consuming thread, which does only I/O: the
  handlers run in an executor and settle through that thread (see ``consuming``);
- one BlockingConnection behind a lock for declare / get / message_count / purge.

A consumer whose connection is lost reconnects after ``reconnect_delay`` seconds, doubling per failed
attempt up to ``reconnect_max_delay``; the deliveries of the lost connection that no handler had
started are dropped (the broker delivers them again). A consumer that stops hands its queue over in
order: it starts nothing more, lets its running handlers settle, then drops its connection without
cancelling (``consuming.drop`` says why), so the broker returns what it held ahead of the rest.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pika
import structlog
from pika.adapters.utils.connection_workflow import AMQPConnectorStackTimeout

from canonical_model.errors import TransportError
from canonical_model.truncation import truncate
from connectors.base import (
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REPLAY_OF,
    Delivery,
    DeliveryHandler,
    OutgoingMessage,
    Topology,
    Transport,
)
from connectors.rabbitmq.consuming import Executor, Session, drop
from connectors.rabbitmq.delivery import RabbitMQDelivery
from connectors.rabbitmq.errors import CHANNEL_ERRORS, CONNECTION_ERRORS, SYSTEM, translated
from connectors.rabbitmq.publisher import ConfirmingPublisher
from connectors.rabbitmq.topology import ExchangeTypeUnknown, declare_topology, delete_topology, retry_delays_ms
from connectors.rabbitmq.wire import install as install_bounded_decoder
from connectors.urls import redact_url

log = structlog.get_logger(__name__)

# header tables nested too deep or holding impossible timestamps must not kill a connection in pika's decoder
install_bounded_decoder()

T = TypeVar("T")
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: seconds ``get`` waits for a ready message of a single-active-consumer queue (another consumer may be active)
GET_WAIT = 1.0
#: seconds after which ``get`` on such a queue believes a count of 0 ready messages
GET_EMPTY_AFTER = 0.1


class BrokerUnreachable(TransportError):
    """No connection to the broker after the configured attempts (unreachable, or refusing the login)."""


def _connection_failure(exc: BaseException, timeout: float) -> str:
    """Why pika could not connect, in words, bounded; ``timeout``: seconds one attempt may take."""
    if isinstance(exc, AMQPConnectorStackTimeout):
        # TCP (and TLS) went through but no AMQP handshake completed: a stalled broker, another
        # service on the port, a load balancer without a backend, or amqps:// against a plain port
        return (
            f"no AMQP handshake within {timeout:g} s per attempt (the port accepts connections but does not "
            "answer as a RabbitMQ broker; check host, port and amqp:// vs amqps://)"
        )
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError):
        return "the broker refused the user name or password (ACCESS_REFUSED)"
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return "the broker refused access to the virtual host (does it exist, may this user use it?)"
    detail = str(exc) or repr(exc)
    if isinstance(exc, pika.exceptions.AMQPConnectionError) and exc.args:
        detail = "; ".join(str(arg) or repr(arg) for arg in exc.args)  # pika wraps the socket's own error
    return f"{type(exc).__name__}: {detail[:300]}"


@dataclass(frozen=True)
class _QueueSettings:
    """What a delivery of a declared queue needs to settle itself."""

    delivery_limit: int | None
    dead_letter_exchange: str
    retry_exchange: str = ""
    retry_delays: frozenset[int] = frozenset()
    #: single active consumer: the broker refuses ``basic.get`` on it (405 RESOURCE_LOCKED)
    exclusive: bool = False


class RabbitMQTransport(Transport):
    """``Transport`` on RabbitMQ (3.10+). Options given here win over the same options in the URL.

    ``heartbeat`` (seconds; the broker drops a connection silent for about three of them),
    ``reconnect_delay`` / ``reconnect_max_delay`` (seconds between a consumer's reconnect attempts:
    the first, and the cap of the doubling), ``settle_timeout`` (seconds a handler's ack, retry or dead
    letter may wait for the connection's thread before ``TransportError``), ``stop_timeout`` (seconds
    ``consume`` waits, once stopped, for running handlers to finish), ``poll_interval`` (seconds a
    consumer's connection thread waits for the broker before it looks at its ``stop`` event: how long a
    stop may take to be seen; deliveries and settles wake it at once. Each of a worker's dozen consumer
    threads woke ten times a second with 0.1 s: a third of an idle worker's CPU).
    """

    name = "rabbitmq"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        confirm_window: int = 256,
        heartbeat: int = 30,
        blocked_connection_timeout: float = 30,
        connection_attempts: int = 3,
        retry_delay: float = 1.0,
        socket_timeout: float = 10.0,
        stack_timeout: float = 15.0,
        publish_timeout: float = 60.0,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 2.0,
        poll_interval: float = 0.5,
        client_name: str = "crm-esb",
        settle_timeout: float = 30.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self._url = url
        self._client_name = client_name
        self._options: dict[str, Any] = {
            "heartbeat": heartbeat,
            "blocked_connection_timeout": blocked_connection_timeout,
            "connection_attempts": connection_attempts,
            "retry_delay": retry_delay,
            "socket_timeout": socket_timeout,
            "stack_timeout": stack_timeout,
        }
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._poll_interval = poll_interval
        self._settle_timeout = settle_timeout
        self._stop_timeout = stop_timeout
        self._publisher = ConfirmingPublisher(
            lambda: self._parameters("publisher"), confirm_window=confirm_window, timeout=publish_timeout
        )
        self._admin_lock = threading.RLock()
        self._admin_connection: Any = None
        self._admin_channel: Any = None
        default = Topology()
        self._exchange = default.exchange
        self._dead_letter_exchange = default.dead_letter_exchange
        #: queue (each shard's) -> its settings, for the queues this transport declared
        self._queues: dict[str, _QueueSettings] = {}

    def _parameters(self, role: str, **overrides: Any) -> pika.URLParameters:
        parameters = pika.URLParameters(self._url)
        for option, value in {**self._options, **overrides}.items():
            setattr(parameters, option, value)
        # names the connection in the broker's tools (rabbitmqctl list_connections client_properties)
        parameters.client_properties = {"connection_name": f"{self._client_name} {role} pid={os.getpid()}"}
        return parameters

    # -- declare, publish

    def declare(self, topology: Topology) -> None:
        """Declare ``topology`` (idempotent); ``ExchangeTypeUnknown`` (a ``TransportError``) names the
        plugin to enable when a sharded queue needs the consistent-hash exchange and the broker lacks it."""
        self._admin("declare", lambda channel: declare_topology(channel, topology))
        self._exchange = topology.exchange
        self._dead_letter_exchange = topology.dead_letter_exchange
        retry = (topology.retry_exchange, frozenset(retry_delays_ms(topology)))
        for spec in topology.queues:
            for name in spec.queue_names:
                self._queues[name] = _QueueSettings(
                    spec.delivery_limit, topology.dead_letter_exchange, *retry, exclusive=spec.exclusive
                )
        for spec in topology.dead_letter_subscribers:
            for name in spec.queue_names:
                self._queues[name] = _QueueSettings(
                    spec.delivery_limit, topology.final_dead_letter_exchange, *retry, exclusive=spec.exclusive
                )
        log.info("topology declared", exchange=topology.exchange, queues=[spec.name for spec in topology.queues])

    def delete(self, topology: Topology) -> None:
        """Delete the queues and exchanges of ``topology`` (tests, tools)."""
        self._admin("delete", lambda channel: delete_topology(channel, topology))
        for spec in (*topology.queues, *topology.dead_letter_subscribers):
            for name in spec.queue_names:
                self._queues.pop(name, None)

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self._publisher.publish(self._exchange, messages)

    def send_to_queue(self, queue: str, message: OutgoingMessage) -> None:
        headers = {**message.headers, HEADER_ORIGINAL_ROUTING_KEY: truncate(message.routing_key, 255)}
        headers.setdefault(HEADER_REPLAY_OF, "")
        self._publisher.publish("", [replace(message, routing_key=queue, headers=headers)])

    # -- consume

    def consume(
        self,
        queue: str,
        handler: DeliveryHandler,
        *,
        stop: threading.Event,
        prefetch: int = 50,
        concurrency: int = 1,
        executor: futures.Executor | None = None,
    ) -> None:
        """Consume ``queue`` until ``stop`` is set (see ``Transport.consume``); reconnects by itself.

        This thread does I/O only; ``concurrency`` handler threads (or the caller's ``executor``) run the
        handler. At most ``prefetch``
        unsettled messages are held. On stop: nothing more starts, running handlers get up to ``stop_timeout``
        seconds, then the connection is dropped and the broker returns the unstarted deliveries, in their
        order, ahead of the queue's other messages, also to a consumer that takes the queue over.
        """
        handlers = Executor(handler, concurrency, queue, stop, shared=executor)
        try:
            delay = self._reconnect_delay
            while not stop.is_set():
                connected = threading.Event()
                try:
                    self._consume_connection(queue, handlers, stop, prefetch, connected)
                except Exception as exc:
                    if connected.is_set():  # it was up: try again at once, with the first delay
                        delay = self._reconnect_delay
                    if isinstance(exc, (TransportError, *CONNECTION_ERRORS, *CHANNEL_ERRORS)):
                        log.warning(
                            "consumer disconnected; reconnecting", queue=queue, error=repr(exc)[:300], retry_in=delay
                        )
                    else:
                        log.exception("consumer failed; reconnecting", queue=queue, retry_in=delay)
                    stop.wait(delay)
                    delay = min(delay * 2, self._reconnect_max_delay)
        finally:
            handlers.close(self._stop_timeout)

    def _consume_connection(
        self,
        queue: str,
        executor: Executor,
        stop: threading.Event,
        prefetch: int,
        connected: threading.Event,
    ) -> None:
        settings = self._queue_settings(queue)
        # one attempt: the consume loop retries with its own (short, capped) delays
        connection = pika.BlockingConnection(self._parameters(f"consumer {queue}", connection_attempts=1))
        session: Session | None = None
        try:
            channel = connection.channel()
            channel.confirm_delivery()  # for the dead letter and retry copies published on this channel
            channel.basic_qos(prefetch_count=prefetch)
            session = Session(connection, channel, queue, timeout=self._settle_timeout)
            current = session
            held: list[RabbitMQDelivery] = []

            def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
                # pika hands over messages it had buffered even when their connection is already gone
                if not current.open:
                    return  # the broker delivers it again
                try:
                    delivery = RabbitMQDelivery(
                        channel,
                        method,
                        properties,
                        body,
                        queue=queue,
                        dead_letter_exchange=settings.dead_letter_exchange,
                        delivery_limit=settings.delivery_limit,
                        retry_exchange=settings.retry_exchange,
                        retry_delays=settings.retry_delays,
                        settler=current.run,
                    )
                except Exception:  # a bug in reading the wire: this message alone goes, not the connection
                    log.exception("unreadable delivery; rejected to the dead letter exchange", queue=queue)
                    channel.basic_reject(method.delivery_tag, requeue=False)
                    return
                if stop.is_set():
                    held.append(delivery)  # not started: the broker returns it when the connection drops
                    return
                executor.submit(current, delivery)

            tag = channel.basic_consume(queue, on_message, auto_ack=False)
            connected.set()
            log.info("consuming", queue=queue, prefetch=prefetch)
            while not stop.is_set():
                connection.process_data_events(time_limit=self._poll_interval)
                # process_data_events does not raise when the broker closed only the channel or
                # cancelled the consumer (queue deleted, consumer_timeout): reconnect instead of idling.
                if not channel.is_open or tag not in channel.consumer_tags:
                    raise TransportError(
                        f"consumer of {queue} was closed or cancelled by the broker", system="rabbitmq"
                    )
            self._wind_down(session, executor, prefetch, held)
        except BaseException as exc:
            if session is not None:
                session.close(f"consumer connection lost ({type(exc).__name__})")
                dropped = executor.withdraw(session)
                if dropped:
                    log.info("unstarted deliveries of a lost connection dropped", queue=queue, count=len(dropped))
            raise
        finally:
            if session is not None:
                session.close("consumer stopped")
            if session is not None and connection.is_open:
                # it may hold deliveries: a clean close would put them behind the queue's ready messages
                drop(connection, timeout=self._stop_timeout)
            with suppress(Exception):
                if connection.is_open:
                    connection.close()

    def _wind_down(self, session: Session, executor: Executor, prefetch: int, held: list[RabbitMQDelivery]) -> None:
        """Stop set: hand the queue over in order. Nothing more starts (``on_message`` holds what still
        arrives, the executor leaves what it had not started), running handlers get at most
        ``stop_timeout`` seconds (their settles still pass), then the connection is dropped without a
        cancel: the broker returns every unsettled delivery, in order and ahead of the queue's ready
        messages, before the next consumer becomes active (see ``consuming.drop``; a cancel first, then
        nacks, made the next consumer see ready 4 .. 9 before the held 1, 2, 3).

        A handler still running after ``stop_timeout`` cannot settle any more: its message comes back
        first, to the next consumer, while that handler may still run (handlers stay idempotent).
        """
        withdrawn = executor.withdraw(session)
        deadline = time.monotonic() + self._stop_timeout
        while executor.running(session) and time.monotonic() < deadline:
            session.connection.process_data_events(time_limit=self._poll_interval)
        if executor.running(session):
            log.warning("handlers still running at stop; their messages come back", queue=session.queue)
        with suppress(*CHANNEL_ERRORS, *CONNECTION_ERRORS):
            # a round trip: the broker has taken every settle sent before it when the connection drops
            session.channel.basic_qos(prefetch_count=prefetch)
        session.close("consumer stopped")
        drop(session.connection, timeout=self._stop_timeout)
        unstarted = len(withdrawn) + len(executor.withdraw(session)) + len(held)
        log.info("consumer stopped; the broker returns its unstarted deliveries", queue=session.queue, count=unstarted)

    def _queue_settings(self, queue: str) -> _QueueSettings:
        return self._queues.get(queue, _QueueSettings(None, self._dead_letter_exchange))

    # -- get, count, purge: one shared connection

    def get(self, queue: str) -> Delivery | None:
        """One message of ``queue``, unsettled, or None if none is ready. On a single-active-consumer queue
        (where the broker refuses ``basic.get``) through a consumer of its own that waits at most
        ``GET_WAIT`` seconds for a ready message; None while another consumer is the active one."""
        settings = self._queue_settings(queue)

        def basic_get(channel: Any) -> Delivery | None:
            if settings.exclusive:
                method, properties, body = self._consume_one(channel, queue)
            else:
                method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return None
            return RabbitMQDelivery(
                channel,
                method,
                properties,
                body,
                queue=queue,
                dead_letter_exchange=settings.dead_letter_exchange,
                delivery_limit=settings.delivery_limit,
                retry_exchange=settings.retry_exchange,
                retry_delays=settings.retry_delays,
                lock=self._admin_lock,
            )

        return self._admin("get", basic_get)

    def _consume_one(self, channel: Any, queue: str) -> tuple[Any, Any, bytes]:
        """``basic.get`` for a single-active-consumer queue, on the admin channel (prefetch 1)."""
        taken: list[tuple[Any, Any, bytes]] = []
        tag = channel.basic_consume(queue, lambda _ch, method, props, body: taken.append((method, props, body)))
        try:
            started = time.monotonic()
            while not taken and time.monotonic() - started < GET_WAIT:
                self._admin_connection.process_data_events(time_limit=0.02)
                # a ready message reaches a new consumer within milliseconds; the queue's count lags a
                # requeue a little, so an empty queue is believed after a short while only
                believe_empty = not taken and time.monotonic() - started > GET_EMPTY_AFTER
                if believe_empty and int(channel.queue_declare(queue, passive=True).method.message_count) == 0:
                    break
        finally:
            channel.basic_cancel(tag)  # a message that arrived after all goes back (pika rejects it, requeued)
        return taken[0] if taken else (None, None, b"")

    def message_count(self, queue: str) -> int:
        return self._admin("message_count", lambda ch: int(ch.queue_declare(queue, passive=True).method.message_count))

    def purge(self, queue: str) -> int:
        return self._admin("purge", lambda channel: int(channel.queue_purge(queue).method.message_count))

    def _admin(self, operation: str, action: Callable[[Any], T]) -> T:
        """Run ``action`` on the shared channel; a lost connection (e.g. idle too long) is replaced once."""
        with self._admin_lock:
            for attempt in (1, 2):
                try:
                    with translated(operation):
                        return action(self._open_admin_channel())
                except TransportError as exc:
                    if isinstance(exc, (BrokerUnreachable, ExchangeTypeUnknown)):
                        if isinstance(exc, ExchangeTypeUnknown):
                            self._close_admin()  # the broker closed the connection over it
                        raise  # the configured connection attempts are spent: a second round would double them
                    if isinstance(exc.__cause__, CHANNEL_ERRORS):
                        self._admin_channel = None  # the broker closed it (404, 406): the next call opens another
                    elif isinstance(exc.__cause__, CONNECTION_ERRORS) and attempt == 1:
                        self._close_admin()
                        continue
                    raise
            raise AssertionError("unreachable")

    def _open_admin_channel(self) -> Any:
        if self._admin_connection is None or not self._admin_connection.is_open:
            self._admin_connection = None  # a dead one is not kept if the new one cannot be opened
            self._admin_connection = self._connect("admin")
            self._admin_channel = None
        if self._admin_channel is None or not self._admin_channel.is_open:
            channel = self._admin_connection.channel()
            channel.confirm_delivery()
            channel.basic_qos(prefetch_count=1)  # get() on a single-active-consumer queue: one message
            self._admin_channel = channel
        return self._admin_channel

    def _connect(self, role: str) -> Any:
        """A BlockingConnection after at most the configured attempts, else ``BrokerUnreachable``.

        The first connection a process opens is the admin one (``declare``), so this is what a
        command meets at start-up: one error naming the URL (password masked) and the reason.
        """
        try:
            return pika.BlockingConnection(self._parameters(role))
        except CONNECTION_ERRORS as exc:
            attempts = self._options["connection_attempts"]
            raise BrokerUnreachable(
                f"cannot connect to RabbitMQ at {redact_url(self._url)} "
                f"after {attempts} attempt{'s' if attempts != 1 else ''}: "
                f"{_connection_failure(exc, self._options['stack_timeout'])}",
                system=SYSTEM,
                operation="connect",
            ) from exc

    def _close_admin(self) -> None:
        connection, self._admin_connection, self._admin_channel = self._admin_connection, None, None
        if connection is not None:
            with suppress(Exception):
                if connection.is_open:
                    connection.close()

    def close(self) -> None:
        self._publisher.close()
        with self._admin_lock:
            self._close_admin()


__all__ = ["DEFAULT_URL", "BrokerUnreachable", "RabbitMQTransport"]
