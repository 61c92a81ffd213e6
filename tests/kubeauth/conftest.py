"""Fixtures: the Kubernetes stand-in over TLS answering TokenReviews, and the REST
app with the kubeauth plugin pointing at it."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from falcon import testing

from commissaire.config import ServerConfig
from tests.k8s_standin.server import KubeStandIn
from tests.unit.fakes import DictStore, api_client

PLUGIN = "commissaire_http.authentication.kubeauth"
#: The server's own credential with the stand-in (must never be logged).
SERVER_TOKEN = "reviewer-Sekr1t-credential"
BINDINGS = {"groups": {"k8s-viewers": "viewer", "k8s-admins": "admin"},
            "users": {"system:serviceaccount:ops:deployer": "operator"}}


@pytest.fixture
def standin() -> Iterator[KubeStandIn]:
    server = KubeStandIn(token=SERVER_TOKEN, tls=True).start()
    try:
        yield server
    finally:
        server.stop()


def plugin_entry(standin: KubeStandIn, **options: Any) -> dict[str, Any]:
    assert standin.pki is not None
    entry: dict[str, Any] = {"name": PLUGIN, "server_url": standin.url,
                             "certificate_authority": str(standin.pki.ca_cert),
                             "token": SERVER_TOKEN, "request_timeout": 5}
    entry.update(options)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.fixture
def make_client(standin: KubeStandIn) -> Callable[..., testing.TestClient]:
    """The app with no basic users and kubeauth; options override the plugin's
    defaults, except ServerConfig fields (auth_failure_limit...), which go to the server."""
    server_fields = {f.name for f in dataclasses.fields(ServerConfig)}

    def make(**options: Any) -> testing.TestClient:
        settings = {k: options.pop(k) for k in list(options) if k in server_fields}
        settings.setdefault("role_bindings", BINDINGS)
        return api_client(DictStore(), {}, more_plugins=(plugin_entry(standin, **options),),
                          **settings)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
