"""The REST API with the real storage service behind a direct (broker-less) bus."""
from __future__ import annotations

import base64
import json

import bcrypt
import pytest
from falcon import testing

from tests.unit.fakes import DictStore, api_client

USERS = {"a": {"hash": bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()}}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"a:a").decode()}
KEY = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").decode()


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def client(store: DictStore) -> testing.TestClient:
    return api_client(store, USERS, trusted_proxies=["127.0.0.2/32"])


def put(client: testing.TestClient, path: str, body: object = None, **kw) -> testing.Result:
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    return client.simulate_put(path, body=data, headers={**AUTH, **kw.pop("headers", {})}, **kw)


def get(client: testing.TestClient, path: str, **kw) -> testing.Result:
    return client.simulate_get(path, headers=AUTH, **kw)


def delete(client: testing.TestClient, path: str) -> testing.Result:
    return client.simulate_delete(path, headers=AUTH)


def test_anonymous_is_refused_with_a_json_error(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v0/clusters")
    assert result.status_code == 401
    assert result.json["error"]["code"] == 401
    assert "Basic" in result.headers["WWW-Authenticate"]


def test_cluster_lifecycle(client: testing.TestClient) -> None:
    assert put(client, "/api/v0/cluster/honeynut", {"network": "default"}).status_code == 201
    assert put(client, "/api/v0/cluster/honeynut", {"network": "default"}).status_code == 200
    assert get(client, "/api/v0/clusters").json == ["honeynut"]
    shown = get(client, "/api/v0/cluster/honeynut").json
    assert shown["hosts"] == {"total": 0, "available": 0, "unavailable": 0}
    assert delete(client, "/api/v0/cluster/honeynut").json == []
    assert get(client, "/api/v0/cluster/honeynut").status_code == 404
    assert delete(client, "/api/v0/cluster/honeynut").status_code == 404


def test_validation_errors_name_the_field_and_store_nothing(client: testing.TestClient,
                                                            store: DictStore) -> None:
    before = dict(store.data)
    bad = put(client, "/api/v0/host/10.0.0.1", {"ssh_priv_key": "not base64!"})
    assert bad.status_code == 400
    assert bad.json["error"]["field"] == "ssh_priv_key"
    assert put(client, "/api/v0/host/10.0.0.1", "{nope").json["error"]["title"] == "Malformed JSON"
    bad_addr = put(client, "/api/v0/host/300.1.1.1", {"ssh_priv_key": KEY})
    assert bad_addr.status_code == 400 and bad_addr.json["error"]["field"] == "address"
    bad_net = put(client, "/api/v0/network/n1", {"type": "flannel_server"})
    assert bad_net.status_code == 400 and bad_net.json["error"]["field"] == "options.address"
    assert store.data == before


def test_seed_curl_walkthrough_body(client: testing.TestClient) -> None:
    put(client, "/api/v0/cluster/datacenter1", {})
    body = {"host": "192.168.1.100", "cluster": "datacenter1", "remote_user": "root",
            "ssh_priv_key": "dGVzdAo="}
    created = put(client, "/api/v0/host/192.168.1.100", body)
    assert created.status_code == 201
    assert created.json["address"] == "192.168.1.100"
    assert "ssh_priv_key" not in created.json
    assert get(client, "/api/v0/host/192.168.1.100/creds").json == {
        "ssh_priv_key": "dGVzdAo=", "remote_user": "root"}
    assert get(client, "/api/v0/cluster/datacenter1/hosts").json == ["192.168.1.100"]
    restart = put(client, "/api/v0/cluster/datacenter1/restart")
    assert restart.status_code == 201
    assert restart.json["status"] == "in_process"
    assert put(client, "/api/v0/cluster/datacenter1/restart").status_code == 409
    deploy = put(client, "/api/v0/cluster/datacenter1/deploy", {"version": "7.2.1"})
    assert deploy.status_code == 201 and deploy.json["version"] == "7.2.1"
    assert put(client, "/api/v0/cluster/datacenter1/upgrade", {"max_unavailable": "x"}
               ).status_code == 400
    assert delete(client, "/api/v0/cluster/datacenter1/restart").json["status"] == "aborted"


def test_host_with_missing_cluster_is_409(client: testing.TestClient) -> None:
    result = put(client, "/api/v0/host/192.168.152.110", {"ssh_priv_key": KEY,
                                                          "cluster": "headache"})
    assert result.status_code == 409
    assert get(client, "/api/v0/host/192.168.152.110").status_code == 404


def test_members_old_new_and_membership_test(client: testing.TestClient) -> None:
    put(client, "/api/v0/cluster/honeynut", {})
    put(client, "/api/v0/host/192.168.152.110", {"ssh_priv_key": KEY})
    assert get(client, "/api/v0/cluster/honeynut/hosts/192.168.152.110").status_code == 404
    assert put(client, "/api/v0/cluster/honeynut/hosts", "'Part of this nutritious breakfast'"
               ).status_code == 400
    assert put(client, "/api/v0/cluster/honeynut/hosts",
               {"old": ["bogus"], "new": ["192.168.152.110"]}).status_code in (400, 409)
    assert put(client, "/api/v0/cluster/honeynut/hosts",
               {"old": ["10.9.9.9"], "new": ["192.168.152.110"]}).status_code == 409
    ok = put(client, "/api/v0/cluster/honeynut/hosts", {"old": [], "new": ["192.168.152.110"]})
    assert ok.status_code == 200 and ok.json == ["192.168.152.110"]
    assert get(client, "/api/v0/cluster/honeynut/hosts/192.168.152.110").json == \
        ["192.168.152.110"]
    assert delete(client, "/api/v0/cluster/honeynut/hosts/192.168.152.110").json == []
    assert put(client, "/api/v0/cluster/honeynut/hosts/192.168.152.110").json == \
        ["192.168.152.110"]
    assert delete(client, "/api/v0/host/192.168.152.110").json == []
    assert get(client, "/api/v0/cluster/honeynut/hosts").json == []


def test_host_list_filters_and_pages(client: testing.TestClient) -> None:
    put(client, "/api/v0/cluster/c1", {})
    for i in range(1, 6):
        put(client, f"/api/v0/host/10.0.0.{i}", {"ssh_priv_key": KEY,
                                                  **({"cluster": "c1"} if i % 2 else {})})
    everything = get(client, "/api/v0/hosts")
    assert len(everything.json) == 5 and everything.headers["X-Total-Count"] == "5"
    in_c1 = get(client, "/api/v0/hosts", params={"cluster": "c1"}).json
    assert [h["address"] for h in in_c1] == ["10.0.0.1", "10.0.0.3", "10.0.0.5"]
    page = get(client, "/api/v0/hosts", params={"limit": "2", "offset": "2"})
    assert [h["address"] for h in page.json] == ["10.0.0.3", "10.0.0.4"]
    assert 'rel="next"' in page.headers["Link"]
    assert get(client, "/api/v0/hosts", params={"status": "investigating"}).headers[
        "X-Total-Count"] == "5"
    assert get(client, "/api/v0/hosts", params={"status": "sleepy"}).status_code == 400
    assert get(client, "/api/v0/hosts", params={"cluster": "nope"}).status_code == 404
    assert get(client, "/api/v0/hosts", params={"limit": "-1"}).status_code == 400


def test_self_registration_takes_the_peer_address(client: testing.TestClient) -> None:
    result = put(client, "/api/v0/host", {"ssh_priv_key": KEY}, remote_addr="127.0.0.9")
    assert result.status_code == 201 and result.json["address"] == "127.0.0.9"
    # X-Forwarded-For is ignored from an untrusted peer ...
    spoof = put(client, "/api/v0/host", {"ssh_priv_key": KEY}, remote_addr="127.0.0.10",
                headers={"X-Forwarded-For": "10.1.1.1"})
    assert spoof.json["address"] == "127.0.0.10"
    # ... and believed from a trusted proxy.
    proxied = put(client, "/api/v0/host", {"ssh_priv_key": KEY}, remote_addr="127.0.0.2",
                  headers={"X-Forwarded-For": "10.1.1.2"})
    assert proxied.json["address"] == "10.1.1.2"


def test_container_manager_token_hidden(client: testing.TestClient) -> None:
    body = {"type": "openshift", "options": {"apiserver": "https://ocp.example:8443",
                                             "token": "aaa"}}
    assert put(client, "/api/v0/containermanager/ocp", body).status_code == 201
    shown = get(client, "/api/v0/containermanager/ocp").json
    assert shown["options"]["token"] == "******"
    assert get(client, "/api/v0/containermanagers").json == ["ocp"]
    assert put(client, "/api/v0/containermanager/ocp", body).status_code == 200


def test_unknown_route_and_wrong_method_are_json(client: testing.TestClient) -> None:
    missing = get(client, "/api/v0/nothing")
    assert missing.status_code == 404 and missing.json["error"]["code"] == 404
    wrong = client.simulate_post("/api/v0/clusters", headers=AUTH)
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == 405


def test_store_down_is_503_with_retry_after(client: testing.TestClient, store: DictStore) -> None:
    store.available = False
    result = get(client, "/api/v0/clusters")
    assert result.status_code == 503 and result.headers["Retry-After"]


def test_status_reports_each_service(client: testing.TestClient) -> None:
    result = get(client, "/api/v0/status")
    assert result.status_code == 200
    assert result.json["services"]["storage"]["status"] == "ok"
    assert result.json["services"]["watcher"]["status"] == "failed"  # not running here
    assert result.json["status"] == "degraded"


def test_openapi_lists_every_route(client: testing.TestClient) -> None:
    doc = get(client, "/api/v0/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert "/api/v0/cluster/{name}/hosts/{address}" in doc["paths"]
    assert set(doc["paths"]["/api/v0/host/{address}"]) == {"get", "put", "delete"}


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_a_body_declared_as_anything_but_json_is_refused(client: testing.TestClient,
                                                         store: DictStore,
                                                         content_type: str) -> None:
    # What a browser may send cross-site without a preflight never reaches a handler.
    before = dict(store.data)
    result = put(client, "/api/v0/cluster/c1", {"network": "default"},
                 headers={"Content-Type": content_type})
    assert result.status_code == 415
    assert "application/json" in result.json["error"]["description"]
    assert store.data == before


@pytest.mark.parametrize("content_type", [None, "application/json",
                                          "Application/JSON; charset=utf-8",
                                          "application/merge-patch+json"])
def test_a_json_body_may_say_so_or_not(client: testing.TestClient,
                                       content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert put(client, "/api/v0/cluster/c1", {"network": "default"},
               headers=headers).status_code == 201
