"""Fixtures: the Kubernetes stand-in over real HTTP, and a fake bus for
storage.reveal_container_manager."""
from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from commissaire_service.containermgr.service import ContainerManagerService
from tests.containermgr.fakes import LOOPBACK, TOKEN, FakeBus
from tests.k8s_standin.server import KubeStandIn


@pytest.fixture
def standin() -> Iterator[KubeStandIn]:
    server = KubeStandIn(token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def service(bus: FakeBus) -> Iterator[ContainerManagerService]:
    # The TLS stand-in's certificates are made in a temporary directory.
    svc = ContainerManagerService(bus, poll_interval=0.05, allowed_urls=LOOPBACK,
                                  certificate_dirs=(tempfile.gettempdir(),))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def k8s(bus: FakeBus, standin: KubeStandIn) -> str:
    """The name of a kubernetes container manager pointing at the stand-in."""
    return bus.add("k8s", "kubernetes", server_url=standin.url, token=TOKEN,
                   request_timeout=5)
