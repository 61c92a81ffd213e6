"""The bus client: JSON-RPC calls to services over kombu.

One reply queue per client (per process), a consumer thread that hands each
reply to the caller waiting on its correlation id, and a deadline on every
request so a service never acts on a request its caller has given up on.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping

from kombu import Connection, Exchange, Producer, Queue
from kombu.message import Message

from commissaire import errors
from commissaire.bus import (
    inproc,  # noqa: F401  (registers inproc://)
    protocol,
)
from commissaire.bus.fastredis import connect, failure
from commissaire.identity import Identity

logger = logging.getLogger(__name__)

#: Errors kombu/redis raise when the broker cannot be reached.
_BROKER_ERRORS = (OSError, ConnectionError)


def _is_broker_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError

    return isinstance(exc, (OperationalError, *_BROKER_ERRORS))


class _Pending:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.response: object = None  # the reply as it arrived (None: none yet)


class BusClient:
    """Calls services (`call`) and publishes notifications (`notify`)."""

    def __init__(self, uri: str, exchange: str = "commissaire", timeout: float = 10.0) -> None:
        self.uri = uri
        self.timeout = timeout
        self.exchange = Exchange(exchange, type="topic", durable=False)
        self.reply_key = f"reply.{uuid.uuid4().hex}"
        self._reply_queue = Queue(
            f"commissaire.{self.reply_key}",
            exchange=self.exchange,
            routing_key=self.reply_key,
            durable=False,
            auto_delete=True,
        )
        self._pending: dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        # One publishing connection per calling thread: kombu connections are not
        # thread-safe, and one shared connection behind a lock made concurrent
        # callers (server threads) queue for it.
        self._local = threading.local()
        self._publishers: list[Connection] = []
        self._publishers_lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._consumer_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._consume_replies, name="bus-replies", daemon=True
        )
        self._thread.start()

    # -- calls -----------------------------------------------------------

    def call(self, method: str, params: Mapping[str, object] | None = None,
             timeout: float | None = None, request_id: str | None = None,
             actor: Identity | None = None) -> object:
        """Call `service.method` (on behalf of `actor`, the API caller it is made
        for) and return its result, or raise its error."""
        timeout = self.timeout if timeout is None else timeout
        if not self._ready.wait(min(timeout, 5.0)):
            raise errors.BusUnavailable(f"cannot listen for replies on the bus at {self._safe_uri()}")
        call_id = protocol.new_id()
        pending = _Pending()
        with self._pending_lock:
            self._pending[call_id] = pending
        try:
            self._publish(
                protocol.request(method, params or {}, call_id, actor),
                routing_key=method,
                correlation_id=call_id,
                reply_to=self.reply_key,
                headers={"deadline": time.time() + timeout, "request_id": request_id or call_id},
                expiration=timeout,
            )
            if not pending.event.wait(timeout):
                service = method.split(".", 1)[0]
                raise errors.ServiceTimeout(
                    f"the {service} service did not answer {method} within {timeout:g} s"
                )
        finally:
            with self._pending_lock:
                self._pending.pop(call_id, None)
        assert pending.response is not None
        return protocol.unwrap(pending.response)

    def notify(self, routing_key: str, params: Mapping[str, object]) -> None:
        """Publish a notification nobody answers (e.g. notify.storage.Host.created)."""
        self._publish(protocol.request(routing_key, params, None), routing_key=routing_key)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=3)
        with self._publishers_lock:
            for conn in self._publishers:
                conn.release()
            self._publishers.clear()

    # -- internals -------------------------------------------------------

    def _safe_uri(self) -> str:
        return Connection(self.uri).as_uri()  # masks any password

    def _publish(self, body: protocol.Request, routing_key: str, **properties: object) -> None:
        try:
            self._producer().publish(
                body,
                routing_key=routing_key,
                serializer="json",
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1,
                              "interval_step": 0.2, "interval_max": 0.5},
                **properties,
            )
        except Exception as exc:
            if _is_broker_error(exc):
                self._local.producer = None
                raise errors.BusUnavailable(
                    f"cannot publish to the bus at {self._safe_uri()}: {failure(exc)}"
                ) from None
            raise

    def _producer(self) -> Producer:
        producer = getattr(self._local, "producer", None)
        if producer is None:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = connect(self.uri)
                with self._publishers_lock:
                    self._publishers.append(conn)
            producer = self._local.producer = Producer(conn.default_channel,
                                                       exchange=self.exchange)
        return producer

    def _on_reply(self, body: object, message: Message) -> None:
        call_id = message.properties.get("correlation_id") or (
            body.get("id") if isinstance(body, dict) else None
        )
        with self._pending_lock:
            pending = self._pending.get(str(call_id))
        if pending is None:
            logger.debug("reply %s arrived after its caller gave up", call_id)
            return
        pending.response = body
        pending.event.set()

    def _consume_replies(self) -> None:
        """Own connection, own thread: kombu connections are not thread-safe."""
        while not self._stopping.is_set():
            try:
                with connect(self.uri) as conn:
                    with conn.Consumer(self._reply_queue, callbacks=[self._on_reply],
                                       accept=["json"], no_ack=True):
                        self._ready.set()
                        while not self._stopping.is_set():
                            try:
                                conn.drain_events(timeout=1.0)
                            except TimeoutError:
                                continue
            except Exception as exc:  # broker gone: retry until stopped
                self._ready.clear()
                if not _is_broker_error(exc):
                    logger.exception("reply consumer failed")
                else:
                    logger.warning("bus at %s unreachable (%s); retrying", self._safe_uri(),
                                   failure(exc))
                self._stopping.wait(1.0)
