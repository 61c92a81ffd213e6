"""Self-registration on a self-auth path: what an anonymous caller may and may not do.

`--self-auth /api/v0/host` opens self-registration to anyone. Anyone must not be able
to join a cluster (the controller would then write that cluster's container manager
token to a machine the caller chose) or name the address the controller will SSH to.
"""
from __future__ import annotations

import base64
import json

import bcrypt
import pytest
from falcon import testing

from tests.unit.fakes import DictStore, api_client

USERS = {"reg": {"hash": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()}}
GOOD = {"Authorization": "Basic " + base64.b64encode(b"reg:pw").decode()}
BAD = {"Authorization": "Basic " + base64.b64encode(b"reg:guess").decode()}
KEY = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").decode()


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def client(store: DictStore) -> testing.TestClient:
    app_client = api_client(store, USERS, self_auths=["/api/v0/host"])
    made = app_client.simulate_put("/api/v0/cluster/prod", body=json.dumps({}), headers=GOOD)
    assert made.status_code == 201
    return app_client


def register(client: testing.TestClient, body: dict, headers: dict | None = None,
             peer: str = "127.0.0.9") -> testing.Result:
    return client.simulate_put("/api/v0/host", body=json.dumps(body), headers=headers or {},
                               remote_addr=peer)


def hosts(client: testing.TestClient) -> list[str]:
    return [h["address"] for h in client.simulate_get("/api/v0/hosts", headers=GOOD).json]


@pytest.mark.parametrize("field, value", [("cluster", "prod"), ("address", "127.0.0.77")])
def test_an_anonymous_caller_may_not_choose_cluster_or_address(
        client: testing.TestClient, store: DictStore, field: str, value: str) -> None:
    before = dict(store.data)
    result = register(client, {"ssh_priv_key": KEY, field: value})
    assert result.status_code == 403
    assert result.json["error"]["title"] == "Forbidden"
    assert result.json["error"]["description"].startswith(f"{field}:")
    assert store.data == before  # nothing registered, nothing changed
    assert hosts(client) == []
    cluster = client.simulate_get("/api/v0/cluster/prod/hosts", headers=GOOD)
    assert cluster.json == []


def test_an_anonymous_host_registers_its_own_address_into_no_cluster(
        client: testing.TestClient) -> None:
    result = register(client, {"ssh_priv_key": KEY})
    assert result.status_code == 201
    assert result.json["address"] == "127.0.0.9"
    assert not result.json.get("cluster")
    assert hosts(client) == ["127.0.0.9"]


def test_an_authenticated_caller_may_name_cluster_and_address(
        client: testing.TestClient) -> None:
    result = register(client, {"ssh_priv_key": KEY, "cluster": "prod",
                               "address": "127.0.0.78"}, headers=GOOD)
    assert result.status_code == 201
    assert result.json["address"] == "127.0.0.78"
    assert result.json["cluster"] == "prod"
    assert client.simulate_get("/api/v0/cluster/prod/hosts", headers=GOOD).json == ["127.0.0.78"]


def test_bad_credentials_on_a_self_auth_path_are_refused_not_downgraded(
        client: testing.TestClient, store: DictStore) -> None:
    before = dict(store.data)
    # Without the cluster the body would be fine anonymously: the 401 comes from the
    # credentials, which are checked because they were sent.
    for body in ({"ssh_priv_key": KEY}, {"ssh_priv_key": KEY, "cluster": "prod"}):
        result = register(client, body, headers=BAD)
        assert result.status_code == 401
        assert "Basic" in result.headers["WWW-Authenticate"]
    assert store.data == before


def test_the_document_says_credentials_are_optional_on_the_open_path(
        client: testing.TestClient) -> None:
    doc = client.simulate_get("/api/v0/openapi.json").json
    put = doc["paths"]["/api/v0/host"]["put"]
    assert put["security"] == [{}, {"basic": []}]
    assert {"401", "403"} <= set(put["responses"])
    assert doc["paths"]["/api/v0/host/{address}"]["get"].get("security") is None
