"""The bus on both transports: the in-process one and a real Redis."""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from commissaire import errors
from commissaire.bus import BusClient, BusServer

pytestmark = pytest.mark.integration


class Recorder:
    """A service that records what it was asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def dispatch(self, method: str, params: dict, context: dict) -> object:
        with self.lock:
            self.seen.append((method, params))
        if method.endswith(".echo"):
            return {"echo": params, "by": self.name}
        if method.endswith(".missing"):
            raise errors.NotFound("no such record", field_hint="x")
        if method.endswith(".slow"):
            time.sleep(params.get("seconds", 0.5))
            return "late"
        if method.startswith("notify."):
            return None
        raise errors.MethodNotFound(method)


@pytest.fixture(params=["inproc", "redis"])
def uri(request: pytest.FixtureRequest) -> str:
    if request.param == "inproc":
        return "inproc://"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
def exchange(request: pytest.FixtureRequest) -> str:
    # A fresh exchange per test keeps queues of different tests apart.
    return f"test-{request.node.name}-{time.monotonic_ns()}".replace("[", "-").replace("]", "")


def serve(uri: str, exchange: str, recorder: Recorder, keys: list[str],
          queue: str = "echo", threads: int = 1) -> BusServer:
    server = BusServer(uri, exchange, queue, keys, recorder.dispatch, threads=threads)
    server.start()
    assert server.ready.wait(10)
    return server


@pytest.fixture
def client(uri: str, exchange: str) -> Iterator[BusClient]:
    bus = BusClient(uri, exchange, timeout=5)
    yield bus
    bus.close()


def test_call_returns_the_result(uri: str, exchange: str, client: BusClient) -> None:
    server = serve(uri, exchange, Recorder("one"), ["echo.*"])
    try:
        assert client.call("echo.echo", {"a": 1}) == {"echo": {"a": 1}, "by": "one"}
    finally:
        server.stop()


def test_errors_come_back_as_their_class(uri: str, exchange: str, client: BusClient) -> None:
    server = serve(uri, exchange, Recorder("one"), ["echo.*"])
    try:
        with pytest.raises(errors.NotFound) as caught:
            client.call("echo.missing")
        assert caught.value.description == "no such record"
        assert caught.value.http_status == 404
        with pytest.raises(errors.MethodNotFound):
            client.call("echo.nothing_here")
    finally:
        server.stop()


def test_no_service_is_a_timeout(client: BusClient) -> None:
    started = time.monotonic()
    with pytest.raises(errors.ServiceTimeout, match="nobody service"):
        client.call("nobody.ping", timeout=0.5)
    assert time.monotonic() - started < 3


def test_copies_of_a_service_share_one_queue(uri: str, exchange: str, client: BusClient) -> None:
    first, second = Recorder("first"), Recorder("second")
    servers = [serve(uri, exchange, first, ["echo.*"]), serve(uri, exchange, second, ["echo.*"])]
    try:
        answers = Counter()
        calls = []

        def caller(n: int) -> None:
            for i in range(20):
                answers[client.call("echo.slow", {"seconds": 0.01})] += 1
                calls.append((n, i))

        workers = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert answers["late"] == 80
        assert len(first.seen) + len(second.seen) == 80  # each call handled exactly once
        assert first.seen and second.seen  # and the work was shared
    finally:
        for s in servers:
            s.stop()


def test_a_request_past_its_deadline_is_not_executed(uri: str, exchange: str,
                                                     client: BusClient) -> None:
    recorder = Recorder("late")
    # Declare the queue first so the request waits in it, then stop consuming.
    server = serve(uri, exchange, recorder, ["echo.*"])
    server.stop()
    with pytest.raises(errors.ServiceTimeout):
        client.call("echo.echo", {"stale": True}, timeout=0.3)
    time.sleep(0.4)
    server = serve(uri, exchange, recorder, ["echo.*"])
    try:
        assert client.call("echo.echo", {"fresh": True})["echo"] == {"fresh": True}
        assert ("echo.echo", {"stale": True}) not in recorder.seen
    finally:
        server.stop()


def test_notifications_reach_subscribers(uri: str, exchange: str, client: BusClient) -> None:
    watcher = Recorder("watcher")
    server = serve(uri, exchange, watcher, ["notify.storage.Host.*"], queue="watcher-notify")
    try:
        client.notify("notify.storage.Host.created", {"record": {"address": "10.0.0.1"}})
        client.notify("notify.storage.Cluster.created", {"record": {"name": "c"}})
        deadline = time.monotonic() + 5
        while not watcher.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert watcher.seen == [("notify.storage.Host.created",
                                 {"record": {"address": "10.0.0.1"}})]
    finally:
        server.stop()


def test_one_reply_queue_per_client(uri: str, exchange: str, client: BusClient) -> None:
    server = serve(uri, exchange, Recorder("one"), ["echo.*"])
    try:
        key = client.reply_key
        for i in range(5):
            client.call("echo.echo", {"i": i})
        assert client.reply_key == key
    finally:
        server.stop()


def test_redis_down_is_bus_unavailable() -> None:
    bus = BusClient("redis://127.0.0.1:1/0", "commissaire", timeout=1)
    try:
        with pytest.raises(errors.BusUnavailable):
            bus.call("storage.ping", timeout=1)
    finally:
        bus.close()


def test_one_queue_serves_calls_and_notifications(uri: str, exchange: str,
                                                  client: BusClient) -> None:
    """A service bound to several keys (its methods and a notification) gets both."""
    service = Recorder("investigator")
    server = serve(uri, exchange, service, ["echo.*", "notify.storage.Host.created"])
    try:
        client.notify("notify.storage.Host.created", {"record": {"address": "10.0.0.2"}})
        assert client.call("echo.echo", {"b": 2}, timeout=3) == {"echo": {"b": 2},
                                                                 "by": "investigator"}
        deadline = time.monotonic() + 5
        while len(service.seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(m for m, _ in service.seen) == ["echo.echo", "notify.storage.Host.created"]
    finally:
        server.stop()
