"""kombu's in-process transport, woken by messages instead of polling.

kombu's `memory://` transport polls its queues every `polling_interval` (1 s by
default), so a caller and a consumer in different threads get about one call a
second; lowering the interval trades that for busy-waiting. This subclass keeps
kombu's memory queues and exchange routing but makes consumers sleep on a
condition variable that every publish signals: calls cost microseconds and idle
threads cost nothing. Registered as the `inproc://` transport.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from queue import Empty, Queue
from time import monotonic

from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES, memory, virtual

_wakeup = threading.Condition()
_generation = 0


def _signal() -> None:
    global _generation
    with _wakeup:
        _generation += 1
        _wakeup.notify_all()


class Channel(memory.Channel):
    """Memory channel that signals waiting consumers on every put."""

    # Own broker state: never shared with a plain memory:// connection.
    events: defaultdict[str, set[object]] = defaultdict(set)
    queues: dict[str, Queue[dict[str, object]]] = {}

    def _put(self, queue: str, message: dict[str, object], **kwargs: object) -> None:
        super()._put(queue, message, **kwargs)
        _signal()

    def _put_fanout(self, exchange: str, message: dict[str, object], routing_key: str = "",
                    **kwargs: object) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        _signal()


class Transport(memory.Transport):
    """In-process transport with event-driven delivery."""

    Channel = Channel
    global_state = virtual.BrokerState()
    driver_type = "inproc"
    driver_name = "inproc"

    def drain_events(self, _connection: Connection, timeout: float | None = None,  # type: ignore[override]
                     **_kwargs: object) -> None:
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            with _wakeup:
                seen = _generation
            try:
                self.cycle.get(self._deliver, timeout=timeout)  # type: ignore[union-attr]
                return
            except Empty:
                pass
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            with _wakeup:
                # Sleep only if nothing was published since we looked.
                if _generation == seen:
                    _wakeup.wait(remaining)


TRANSPORT_ALIASES.setdefault("inproc", "commissaire.bus.inproc:Transport")
