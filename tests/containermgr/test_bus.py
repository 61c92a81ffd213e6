"""The container manager service behind the real in-process bus.

Both directions cross the bus: callers reach `container.*`, and the service
reads its records with `storage.reveal_container_manager` from a storage stub
that is itself served on the bus.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from commissaire import errors
from commissaire.bus import BusClient, BusServer
from commissaire_service.containermgr.service import ContainerManagerService
from commissaire_service.service import Service, bus_method
from tests.containermgr.fakes import LOOPBACK, TOKEN, FakeBus
from tests.k8s_standin.server import KubeStandIn

NODE = "10.1.2.3"


class StorageStub(Service):
    """`storage.reveal_container_manager`, answered from a FakeBus's dict."""

    name = "storage"

    def __init__(self, records: FakeBus) -> None:
        super().__init__()
        self.records = records

    @bus_method()
    def reveal_container_manager(self, name: str) -> dict[str, Any]:
        return dict(self.records.call("storage.reveal_container_manager", {"name": name}))


@pytest.fixture
def on_bus(request: pytest.FixtureRequest, bus: FakeBus) -> Iterator[BusClient]:
    exchange = f"test-containermgr-{request.node.name}-{time.monotonic_ns()}"
    client = BusClient("inproc://", exchange, timeout=10)
    service = ContainerManagerService(client, poll_interval=0.05, allowed_urls=LOOPBACK)
    storage = StorageStub(bus)
    servers = [BusServer("inproc://", exchange, svc.name, svc.routing_keys, svc.dispatch)
               for svc in (service, storage)]
    for server in servers:
        server.start()
    for server in servers:
        assert server.ready.wait(10)
    try:
        yield client
    finally:
        stoppers = [threading.Thread(target=server.stop) for server in servers]
        for stopper in stoppers:  # each takes up to a second; stop them together
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        service.stop()
        client.close()


def test_get_node_status_over_the_bus(on_bus: BusClient, bus: FakeBus,
                                      standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=standin.url, token=TOKEN)
    standin.add_node(NODE, ready=True)
    status = on_bus.call("container.get_node_status",
                         {"container_manager": "k8s", "address": NODE})
    assert status["status"] == "Ready" and status["ready"] is True
    assert status["container_manager"] == "k8s" and status["node"] == NODE
    assert on_bus.call("container.node_ready",
                       {"container_manager": "k8s", "address": NODE}) is True
    assert on_bus.call("container.ping")["service"] == "container"


def test_errors_cross_the_bus_as_their_class(on_bus: BusClient, bus: FakeBus,
                                             standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=standin.url, token="not-the-token")
    with pytest.raises(errors.ContainerManagerError) as caught:
        on_bus.call("container.register_node", {"container_manager": "k8s", "address": NODE})
    assert "refused our credentials" in caught.value.description
    assert "not-the-token" not in caught.value.description
    with pytest.raises(errors.NotFound):
        on_bus.call("container.get_node_status",
                    {"container_manager": "missing", "address": NODE})
