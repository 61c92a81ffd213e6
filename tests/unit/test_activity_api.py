"""The activity stream through the REST app: every change request is an entry
(who, how they authenticated, from where, which request, what, on what, with
which fields, how it ended), refusals included; secrets never appear in the
store, an answer or the log; GET /api/v0/events filters and pages."""
from __future__ import annotations

import base64
import json
import logging
import secrets
from typing import Any

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from falcon import testing

from commissaire.config import ServerConfig
from commissaire.identity import Identity, Role
from commissaire_http.activity import actor_of
from commissaire_http.app import routes
from tests.unit.fakes import DictStore, api_client

USERS = {"alice": {"hash": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()}}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
PEM = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
    serialization.NoEncryption())
KEY = base64.b64encode(PEM).decode()
TOKEN = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32)
HOSTILE = "x\n{{ lookup('pipe','id') }}"


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def client(store: DictStore) -> testing.TestClient:
    # One store for records and entries: "nowhere in the store" means both.
    return api_client(store, USERS, events=store, trusted_proxies=["127.0.0.2/32"],
                      self_auths=["/api/v0/host"])


def call(client: testing.TestClient, method: str, path: str, body: Any = None,
         auth: bool = True, rid: str = "", **kw: Any) -> testing.Result:
    headers = {**(AUTH if auth else {}), **kw.pop("headers", {})}
    if rid:
        headers["X-Request-ID"] = rid
    data = None if body is None else json.dumps(body)
    return client.simulate_request(method, path, body=data, headers=headers, **kw)


def events(client: testing.TestClient, **params: Any) -> list[dict[str, Any]]:
    answer = client.simulate_get("/api/v0/events", params=params, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return list(answer.json)


def only(client: testing.TestClient, rid: str) -> dict[str, Any]:
    """The one entry of the request with this id."""
    found = [e for e in events(client, limit=1000) if e["request_id"] == rid]
    assert len(found) == 1, found
    return found[0]


def test_each_change_is_an_entry_with_actor_source_request_object_fields_outcome(
        client: testing.TestClient) -> None:
    steps = [
        ("PUT", "/api/v0/cluster/c1", {"network": "default"}, 201, "create", "cluster", "c1",
         {"network": "default"}),
        ("PUT", "/api/v0/cluster/c1", {"network": "default"}, 200, "create", "cluster", "c1",
         {"network": "default"}),
        ("PUT", "/api/v0/host/10.0.0.1", {"ssh_priv_key": KEY, "remote_user": "core"}, 201,
         "create", "host", "10.0.0.1", {"ssh_priv_key": "******", "remote_user": "core"}),
        ("PUT", "/api/v0/cluster/c1/hosts/10.0.0.1", None, 200, "associate", "cluster",
         "c1/hosts/10.0.0.1", {"host": "10.0.0.1"}),
        ("DELETE", "/api/v0/cluster/c1/hosts/10.0.0.1", None, 200, "disassociate", "cluster",
         "c1/hosts/10.0.0.1", {"host": "10.0.0.1"}),
        ("PUT", "/api/v0/cluster/c1/hosts", {"old": [], "new": ["10.0.0.1"]}, 200, "update",
         "cluster", "c1/hosts", {"old": [], "new": ["10.0.0.1"]}),
        ("PUT", "/api/v0/cluster/c1/restart", {"max_unavailable": 1}, 201, "start", "cluster",
         "c1/restart", {"max_unavailable": 1}),
        ("DELETE", "/api/v0/cluster/c1/restart", None, 200, "abort", "cluster", "c1/restart", {}),
        ("PUT", "/api/v0/containermanager/k8s", {"type": "kubernetes", "options": {
            "server_url": "https://127.0.0.1:6443", "token": TOKEN}}, 201, "create",
         "containermanager", "k8s", {"type": "kubernetes", "options": {
             "server_url": "https://127.0.0.1:6443", "token": "******"}}),
        ("DELETE", "/api/v0/containermanager/k8s", None, 200, "delete", "containermanager",
         "k8s", {}),
        ("DELETE", "/api/v0/host/10.0.0.1", None, 200, "delete", "host", "10.0.0.1", {}),
    ]
    for number, (method, path, body, status, action, kind, key, fields) in enumerate(steps):
        rid = f"step{number}"
        answer = call(client, method, path, body, rid=rid, remote_addr="127.0.0.2",
                      headers={"X-Forwarded-For": "192.0.2.7"})
        assert answer.status_code == status, (path, answer.text)
        entry = only(client, rid)
        assert entry["actor"] == {"name": "alice", "method": "basic"}
        assert entry["source"] == "192.0.2.7"  # the trusted proxy's client
        assert (entry["action"], entry["object"], entry["fields"]) == (
            action, {"kind": kind, "key": key}, fields), path
        assert entry["outcome"] == {"status": status, "error": ""}
        assert entry["at"] and entry["id"]
    assert all(e["action"] != "request" for e in events(client, limit=1000))


def test_reads_are_not_entries(client: testing.TestClient) -> None:
    call(client, "GET", "/api/v0/clusters", rid="read1")
    call(client, "HEAD", "/api/v0/clusters", rid="read2")
    assert events(client) == []


@pytest.mark.parametrize(("method", "path", "body", "auth", "status", "action", "obj"), [
    ("PUT", "/api/v0/cluster/c9", {}, False, 401, "create", {"kind": "cluster", "key": "c9"}),
    ("PUT", "/api/v0/host", {"ssh_priv_key": KEY, "cluster": "c1"}, False, 403, "create",
     {"kind": "host", "key": "127.0.0.9"}),
    ("DELETE", "/api/v0/host/10.9.9.9", None, True, 404, "delete",
     {"kind": "host", "key": "10.9.9.9"}),
    ("PUT", "/api/v0/host/10.0.0.5", {"ssh_priv_key": KEY, "cluster": "nope"}, True, 409,
     "create", {"kind": "host", "key": "10.0.0.5"}),
    ("PUT", "/api/v0/cluster/c1", {"network": "default", "colour": "red"}, True, 400,
     "create", {"kind": "cluster", "key": "c1"}),
    ("POST", "/api/v0/cluster/c1", None, True, 405, "request",
     {"kind": "cluster", "key": "c1"}),
    ("PUT", "/api/v0/nowhere", None, True, 404, "request",
     {"kind": "path", "key": "/api/v0/nowhere"}),
])
def test_refusals_are_entries_with_their_status_and_error(
        client: testing.TestClient, method: str, path: str, body: Any, auth: bool,
        status: int, action: str, obj: dict[str, str]) -> None:
    answer = call(client, method, path, body, auth=auth, rid="refused", remote_addr="127.0.0.9")
    assert answer.status_code == status, answer.text
    entry = only(client, "refused")
    assert (entry["action"], entry["object"]) == (action, obj)
    assert entry["outcome"]["status"] == status
    assert entry["outcome"]["error"] == answer.json["error"]["description"]
    assert entry["source"] == "127.0.0.9"
    assert entry["actor"] == ({"name": "alice", "method": "basic"} if auth
                              else {"name": "anonymous", "method": "none"})
    assert KEY not in json.dumps(entry)


def test_self_registration_names_the_registered_address(client: testing.TestClient) -> None:
    answer = call(client, "PUT", "/api/v0/host", {"ssh_priv_key": KEY}, auth=False,
                  rid="selfreg", remote_addr="127.0.0.44")
    assert answer.status_code == 201
    entry = only(client, "selfreg")
    assert entry["object"] == {"kind": "host", "key": "127.0.0.44"}
    assert entry["actor"] == {"name": "anonymous", "method": "none"}
    assert entry["fields"] == {"ssh_priv_key": "******"}


def test_an_identity_on_the_request_is_the_actor(client: testing.TestClient) -> None:
    """Authentication that leaves an Identity (name and method) names the actor."""

    class Context(dict[str, Any]):
        def __getattr__(self, name: str) -> Any:
            return self[name]

    class Request:
        context = Context(identity=Identity("bob", "client-certificate", Role.OPERATOR),
                          authenticated=True)

    assert actor_of(Request()) == {"name": "bob", "method": "client-certificate"}  # type: ignore[arg-type]


def test_secrets_appear_nowhere_in_store_answers_or_log(
        client: testing.TestClient, store: DictStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        call(client, "PUT", "/api/v0/cluster/c1", {}),
        call(client, "PUT", "/api/v0/host/10.0.0.1", {"ssh_priv_key": KEY, "cluster": "c1"}),
        # a conflicting re-PUT (another key) and a refused one carry secrets too
        call(client, "PUT", "/api/v0/host/10.0.0.1",
             {"ssh_priv_key": base64.b64encode(b"other").decode()}),
        call(client, "PUT", "/api/v0/host/10.0.0.2", {"ssh_priv_key": KEY, "ssh_port": 0}),
        call(client, "PUT", "/api/v0/containermanager/k8s", {"type": "kubernetes", "options": {
            "server_url": "https://127.0.0.1:6443", "token": TOKEN}}),
        call(client, "PUT", "/api/v0/containermanager/k8s", {"type": "kubernetes", "options": {
            "server_url": "https://127.0.0.1:6443", "token": TOKEN + "x"}}),
    ]
    assert [a.status_code for a in answers] == [201, 201, 409, 400, 201, 409]
    listed = client.simulate_get("/api/v0/events", headers=AUTH)
    assert len(listed.json) == 6
    stored = json.dumps({k: v for k, (v, _rev) in store.data.items()})
    assert any(k.startswith("events/") for k in store.data)
    log = caplog.text + "".join(str(r.args) for r in caplog.records)
    pem_body = PEM.decode().splitlines()[2]
    for haystack in (stored, listed.text, *[a.text for a in answers], log):
        for secret in (KEY, pem_body, TOKEN, KEY[20:60]):
            assert secret not in haystack
    assert "******" in listed.text


def test_each_entry_is_one_json_log_line_even_for_hostile_values(
        client: testing.TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="commissaire.activity")
    answer = call(client, "PUT", "/api/v0/host/10.0.0.3",
                  {"ssh_priv_key": KEY, "remote_user": HOSTILE}, rid="hostile")
    assert answer.status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "commissaire.activity"]
    assert len(lines) == 1 and "\n" not in lines[0]
    logged = json.loads(lines[0])
    assert logged["fields"] == {"ssh_priv_key": "******", "remote_user": HOSTILE}
    assert logged["request_id"] == "hostile" and logged["outcome"]["status"] == 400
    assert only(client, "hostile") == logged  # the stored entry is the logged one


def test_a_store_that_is_down_fails_no_request_and_the_line_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    records, stream = DictStore(), DictStore()
    client = api_client(records, USERS, events=stream)
    stream.available = False
    caplog.set_level(logging.INFO, logger="commissaire.activity")
    answer = call(client, "PUT", "/api/v0/cluster/c1", {}, rid="down")
    assert answer.status_code == 201
    assert client.simulate_get("/api/v0/events", headers=AUTH).status_code == 503
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "commissaire.activity"]
    assert [line["request_id"] for line in lines] == ["down"]
    stream.available = True
    assert events(client) == []  # not stored, only logged; later ones are stored again
    call(client, "PUT", "/api/v0/cluster/c2", {}, rid="up")
    assert [e["request_id"] for e in events(client)] == ["up"]


# -- GET /api/v0/events -----------------------------------------------------------

@pytest.fixture
def history(client: testing.TestClient) -> list[dict[str, Any]]:
    """A few entries, oldest first."""
    for name in ("c1", "c2"):
        call(client, "PUT", f"/api/v0/cluster/{name}", {})
    call(client, "PUT", "/api/v0/host/10.0.0.1", {"ssh_priv_key": KEY, "cluster": "c1"})
    call(client, "PUT", "/api/v0/cluster/c2/hosts/10.0.0.1", None)  # 409: in c1
    call(client, "DELETE", "/api/v0/cluster/c1/hosts/10.0.0.1")
    call(client, "PUT", "/api/v0/cluster/c9", {}, auth=False)  # 401
    return list(reversed(events(client)))


def test_newest_first_by_default_or_oldest_first(client: testing.TestClient,
                                                 history: list[dict[str, Any]]) -> None:
    assert len(history) == 6
    assert [e["at"] for e in history] == sorted(e["at"] for e in history)
    assert events(client, order="oldest") == history


@pytest.mark.parametrize(("params", "expected"), [
    ({"object": "cluster/c1"}, [0, 4]),
    ({"object": "cluster/c2"}, [1, 3]),
    ({"object": "cluster"}, [0, 1, 3, 4, 5]),
    ({"object": "host/10.0.0.1"}, [2, 3, 4]),
    ({"actor": "anonymous"}, [5]),
    ({"actor": "alice", "action": "create"}, [0, 1, 2]),
    ({"action": "disassociate"}, [4]),
    ({"object": "network/default"}, []),
])
def test_filters(client: testing.TestClient, history: list[dict[str, Any]],
                 params: dict[str, str], expected: list[int]) -> None:
    assert events(client, order="oldest", **params) == [history[i] for i in expected]


def test_time_window_is_inclusive_and_iso(client: testing.TestClient,
                                          history: list[dict[str, Any]]) -> None:
    since, until = history[1]["at"], history[3]["at"]
    window = events(client, order="oldest", since=since + "Z", until=until)
    assert window == history[1:4]
    assert events(client, until="2000-01-01T00:00:00+00:00") == []
    assert events(client, since="2999-01-01T00:00:00Z") == []


def test_paging_with_total_and_next_link(client: testing.TestClient,
                                         history: list[dict[str, Any]]) -> None:
    newest_first = list(reversed(history))
    first = client.simulate_get("/api/v0/events", params={"limit": 4, "actor": "alice"},
                                headers=AUTH)
    assert first.headers["X-Total-Count"] == "5"
    assert first.json == [e for e in newest_first if e["actor"]["name"] == "alice"][:4]
    link = first.headers["Link"]
    assert link.startswith("</api/v0/events?") and link.endswith('>; rel="next"')
    following = link[1:link.index(">")]
    second = client.simulate_get(following.split("?")[0], query_string=following.split("?")[1],
                                 headers=AUTH)
    assert second.json == [e for e in newest_first if e["actor"]["name"] == "alice"][4:]
    assert "Link" not in second.headers
    unfiltered = client.simulate_get("/api/v0/events", params={"limit": 2, "offset": 2},
                                     headers=AUTH)
    assert unfiltered.headers["X-Total-Count"] == "6" and unfiltered.json == newest_first[2:4]


@pytest.mark.parametrize("params", [
    {"colour": "red"}, {"limit": "0"}, {"limit": "x"}, {"action": "explode"},
    {"since": "yesterday"}, {"until": "2030-13-45T00:00:00"}, {"object": "../etc"},
    {"since": "2100-02-29"}, {"until": "2030-01-01T00:00:00.1234567"},
    {"since": "2030-01-01T00:00:00 "},
    {"actor": "a\nb"}, {"order": "random"},
])
def test_bad_parameters_are_400s_naming_them(client: testing.TestClient,
                                             params: dict[str, str]) -> None:
    answer = client.simulate_get("/api/v0/events", params=params, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert answer.json["error"]["field"] == next(iter(params))


def test_the_route_needs_credentials_names_its_role_and_is_documented(
        client: testing.TestClient) -> None:
    assert client.simulate_get("/api/v0/events").status_code == 401
    table = routes(bus=None, config=ServerConfig())  # type: ignore[arg-type]
    route = next(r for r in table if r["path"] == "/api/v0/events")
    assert route["methods"]["GET"]["role"] is Role.VIEWER
    document = client.simulate_get("/api/v0/openapi.json").json
    operation = document["paths"]["/api/v0/events"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "object", "actor", "action", "since", "until", "limit", "offset", "order"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["items"][
        "properties"]["outcome"]


@pytest.mark.parametrize("params", [
    {"since": "2000-02-29", "until": "2030-01-01T10Z"},
    {"since": "9999-12-31T23:00-05:00"},  # beyond year 9999 in UTC
    {"until": "0001-01-01T00:00+05:00"},  # before year 1 in UTC
    {"until": "9999-12-31T23:59:59.999999Z"},
])
def test_every_time_the_schema_allows_is_taken(client: testing.TestClient,
                                               params: dict[str, str]) -> None:
    assert client.simulate_get("/api/v0/events", params=params, headers=AUTH).status_code == 200
