"""The service side of the bus: consume a shared queue, dispatch, reply.

Every copy of a service consumes the same named queue, so N copies share the
work. Each consumer thread has its own connection (kombu connections are not
thread-safe). Requests whose caller's deadline has passed are dropped unanswered:
the caller already reported a timeout and must not see the change happen later.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from kombu import Exchange, Producer, Queue, binding
from kombu.message import Message

from commissaire import errors
from commissaire.bus import (
    inproc,  # noqa: F401  (registers inproc://)
    protocol,
)
from commissaire.bus.fastredis import connect, failure

logger = logging.getLogger(__name__)

#: dispatch(method, params, context) -> result; raises CommissaireError subclasses.
#: The context holds request_id, routing_key and actor (an Identity or None).
Dispatch = Callable[[str, dict[str, object], Mapping[str, object]], object]


class BusServer:
    """Serves one queue: `commissaire.<queue_name>` bound to `routing_keys`."""

    def __init__(self, uri: str, exchange: str, queue_name: str, routing_keys: list[str],
                 dispatch: Dispatch, threads: int = 1, private: bool = False) -> None:
        """`private`: a queue of this process alone (e.g. notifications every copy of a
        service must see), removed when it stops; otherwise copies share the queue."""
        self.uri = uri
        self.exchange = Exchange(exchange, type="topic", durable=False)
        # One queue with a binding per key: one Queue object per key would make
        # the consumer subscribe to the same queue several times, which kombu's
        # virtual transports (memory, inproc) do not deliver to reliably.
        self.queues = [
            Queue(f"commissaire.{queue_name}", exchange=self.exchange, durable=False,
                  auto_delete=private,
                  bindings=[binding(self.exchange, routing_key=key) for key in routing_keys])
        ]
        self.dispatch = dispatch
        self.threads = threads
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._ready_count = 0
        self._ready_lock = threading.Lock()

    def start(self) -> None:
        """Run the consumer threads in the background."""
        for n in range(self.threads):
            thread = threading.Thread(target=self._work, name=f"{self.queues[0].name}-{n}",
                                      daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._workers:
            thread.join(timeout=3)

    def wait(self) -> None:
        """Block until stopped (for a service's main thread)."""
        while not self._stopping.wait(1.0):
            pass

    def _mark_ready(self) -> None:
        with self._ready_lock:
            self._ready_count += 1
            if self._ready_count >= self.threads:
                self.ready.set()

    def _work(self) -> None:
        marked = False
        while not self._stopping.is_set():
            try:
                with connect(self.uri) as conn:
                    producer = Producer(conn.default_channel, exchange=self.exchange)
                    handler = self._make_handler(producer)
                    # no_ack: a request is taken once; if this process dies with
                    # it, its caller times out (a redelivery would come after the
                    # caller's deadline and be dropped anyway). It also spares
                    # the broker two bookkeeping transactions per message.
                    with conn.Consumer(self.queues, callbacks=[handler], accept=["json"],
                                       no_ack=True):
                        if not marked:
                            self._mark_ready()
                            marked = True
                        while not self._stopping.is_set():
                            try:
                                conn.drain_events(timeout=1.0)
                            except TimeoutError:
                                continue
            except Exception as exc:
                logger.warning("bus consumer for %s lost its connection (%s); retrying",
                               self.queues[0].name, failure(exc))
                self._stopping.wait(1.0)

    def _make_handler(self, producer: Producer) -> Callable[[object, Message], None]:
        def handle(body: object, message: Message) -> None:
            self._handle(body, message, producer)
        return handle

    def _handle(self, body: object, message: Message, producer: Producer) -> None:
        props = message.properties
        headers = message.headers or {}
        reply_to = props.get("reply_to")
        correlation_id = props.get("correlation_id")
        deadline = headers.get("deadline")
        if deadline is not None and time.time() > float(deadline):
            logger.warning("dropping %s: its caller's deadline passed",
                           body.get("method") if isinstance(body, dict) else "?")
            return
        request_id = None
        try:
            method, params, request_id = protocol.parse_request(body)
            context = {"request_id": headers.get("request_id") or request_id,
                       "routing_key": message.delivery_info.get("routing_key", ""),
                       "actor": protocol.parse_actor(body)}
            response: protocol.Result | protocol.Error = protocol.result(
                request_id or "", self.dispatch(method, params, context))
        except errors.CommissaireError as exc:
            if exc.http_status >= 500 and not isinstance(exc, (errors.StoreUnavailable,
                                                                 errors.ServiceTimeout)):
                logger.error("%s failed: %s", _method_of(body), exc.description)
            else:
                logger.info("%s refused: %s", _method_of(body), exc.description)
            response = protocol.error(request_id, exc)
        except Exception:
            logger.exception("%s failed unexpectedly", _method_of(body))
            response = protocol.error(
                request_id, errors.CommissaireError("the service failed unexpectedly; see its log")
            )
        if reply_to and request_id is not None:
            producer.publish(response, routing_key=reply_to, correlation_id=correlation_id,
                             serializer="json", retry=True)


def _method_of(body: object) -> str:
    return str(body.get("method")) if isinstance(body, dict) else "?"
