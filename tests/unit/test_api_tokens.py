"""API tokens through the REST app: made by admins (shown once, stored as a digest),
listed without secrets, expired and revoked at once, last use recorded at most once a
minute, scoped to clusters, verified by the bearer plugin, never in the activity
stream, a notification or a log line."""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import logging
from typing import Any

import bcrypt
import pytest
from falcon import testing

from commissaire_service.storage import tokens as token_methods
from tests.unit.fakes import DictStore, DirectBus, api_client

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
ROLES = ("admin", "operator", "viewer", "registrar")
USERS = {role: {"hash": HASH, "role": role} for role in ROLES}
BEARER = {"name": "commissaire_http.authentication.httpbearerauth"}
KEY = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nx\n").decode()


def basic(user: str = "admin") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    def __init__(self, **settings: Any) -> None:
        self.store, self.events, self.bus = DictStore(), DictStore(), DirectBus()
        self.client: testing.TestClient = api_client(
            self.store, USERS, self.events, more_plugins=(BEARER,), bus=self.bus, **settings)

    def create(self, name: str = "ci", **body: Any) -> testing.Result:
        body.setdefault("role", "viewer")
        return self.client.simulate_put(f"/api/v0/token/{name}", json=body, headers=basic())

    def token(self, name: str = "ci", **body: Any) -> str:
        created = self.create(name, **body)
        assert created.status_code == 201, created.json
        return str(created.json["token"])

    def get(self, path: str, token: str) -> testing.Result:
        return self.client.simulate_get(path, headers=bearer(token))


@pytest.fixture
def api() -> Api:
    return Api()


class Clock:
    """tokens.now, moved by the test."""

    def __init__(self) -> None:
        self.moment = _dt.datetime.now(_dt.UTC)

    def __call__(self) -> _dt.datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += _dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moving = Clock()
    monkeypatch.setattr(token_methods, "now", moving)
    return moving


# -- made once, kept as a digest, listed without secrets ----------------------------

def test_a_token_is_shown_once_and_stored_only_as_its_digest(api: Api) -> None:
    created = api.create("ci", role="operator", clusters=["default-c"] * 0)
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    token = created.json["token"]
    assert token.startswith(f"cmt_{created.json['id']}_") and len(token) == 64
    assert "digest" not in created.json and created.json["created_by"] == "admin"
    raw = json.dumps(dict(api.store.data.items()))
    secret = token.rsplit("_", 1)[1] if token.count("_") == 2 else token[21:]
    assert token not in raw and secret not in raw
    assert hashlib.sha256(token.encode()).hexdigest() in raw  # only the digest is kept
    shown = api.client.simulate_get("/api/v0/token/ci", headers=basic())
    assert shown.status_code == 200 and "token" not in shown.json
    assert "digest" not in shown.json and token not in shown.text
    again = api.create("ci", role="operator")
    assert again.status_code == 409  # not idempotent: the secret cannot be given back
    assert token not in again.text


def test_tokens_are_listed_without_secrets(api: Api) -> None:
    first, second = api.token("a"), api.token("b", role="admin", expires_in=3600)
    listed = api.client.simulate_get("/api/v0/tokens", headers=basic())
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json] == ["a", "b"]
    assert all("digest" not in t and "token" not in t for t in listed.json)
    assert first not in listed.text and second not in listed.text
    assert listed.json[1]["expires_at"] is not None and listed.json[0]["expires_at"] is None


def test_notifications_hold_no_secret_and_no_digest(api: Api) -> None:
    token = api.token()
    api.client.simulate_delete("/api/v0/token/ci", headers=basic())
    sent = [(key, params) for key, params in api.bus.notifications if "ApiToken" in key]
    assert [key for key, _ in sent] == ["notify.storage.ApiToken.created",
                                        "notify.storage.ApiToken.deleted"]
    text = json.dumps(sent)
    assert token not in text and "digest" not in text


# -- who may manage them -------------------------------------------------------------

@pytest.mark.parametrize("role", ["operator", "viewer", "registrar"])
def test_only_admins_manage_tokens(api: Api, role: str) -> None:
    api.token("kept")
    for method, path, body in (("GET", "/api/v0/tokens", None),
                               ("GET", "/api/v0/token/kept", None),
                               ("PUT", "/api/v0/token/new", {"role": "viewer"}),
                               ("DELETE", "/api/v0/token/kept", None)):
        answer = api.client.simulate_request(method, path, json=body, headers=basic(role))
        assert answer.status_code == 403, (method, path)
        assert answer.json["error"]["needed_role"] == "admin"
    assert api.client.simulate_get("/api/v0/token/kept", headers=basic()).status_code == 200


def test_a_token_acts_with_its_role(api: Api) -> None:
    viewer = api.token("v", role="viewer")
    admin = api.token("a", role="admin")
    assert api.get("/api/v0/hosts", viewer).status_code == 200
    refused = api.client.simulate_put("/api/v0/cluster/c1", json={}, headers=bearer(viewer))
    assert refused.status_code == 403 and refused.json["error"]["needed_role"] == "admin"
    assert api.client.simulate_put("/api/v0/cluster/c1", json={},
                                   headers=bearer(admin)).status_code == 201
    # an admin token manages tokens too (it is unscoped)
    assert api.get("/api/v0/tokens", admin).status_code == 200


# -- expiry, revocation, last use -----------------------------------------------------

def test_an_expired_token_is_refused(api: Api, clock: Clock) -> None:
    token = api.token(expires_in=60)
    assert api.get("/api/v0/hosts", token).status_code == 200
    clock.advance(61)
    refused = api.get("/api/v0/hosts", token)
    assert refused.status_code == 401
    assert refused.json["error"]["description"] == "invalid token"
    assert "Bearer" in refused.headers["WWW-Authenticate"]


def test_expiry_in_the_past_or_twice_is_refused_naming_the_field(api: Api) -> None:
    past = api.create("p", expires_at="2000-01-01T00:00:00Z")
    # well-formed, but the server's clock is past it: a conflict, as a missing cluster
    assert past.status_code == 409 and past.json["error"]["field"] == "expires_at"
    both = api.create("b", expires_in=60, expires_at="2999-01-01T00:00:00Z")
    assert both.status_code == 400 and both.json["error"]["field"] == "expires_at"
    null = api.create("n", expires_in=60, expires_at=None)  # null: not given
    assert null.status_code == 201
    year = _dt.datetime.now(_dt.UTC).year + 1
    fine = api.create("f", expires_at=f"{year}-01-31T12:00:00Z")
    assert fine.status_code == 201 and fine.json["expires_at"] == f"{year}-01-31T12:00:00"
    far = api.create("g", expires_at="9999-12-31T23:59:59Z")
    assert far.status_code == 201


def test_revocation_is_at_once(api: Api) -> None:
    token = api.token()
    assert api.get("/api/v0/hosts", token).status_code == 200
    assert api.client.simulate_delete("/api/v0/token/ci", headers=basic()).status_code == 200
    assert api.get("/api/v0/hosts", token).status_code == 401
    assert api.client.simulate_get("/api/v0/token/ci", headers=basic()).status_code == 404
    assert not [k for k in api.store.data if k.startswith(("tokens/", "token_ids/"))]
    # the name is free again, for a new secret
    assert api.token() != token


def test_unknown_revoked_expired_and_malformed_read_the_same(api: Api) -> None:
    token = api.token()
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    unknown = "cmt_0123456789abcdef_" + "x" * 43
    answers = [api.get("/api/v0/hosts", t) for t in (forged, unknown, "cmt_short")]
    assert {a.status_code for a in answers} == {401}
    assert {a.json["error"]["description"] for a in answers} == {"invalid token"}


def test_last_use_is_recorded_at_most_once_a_minute(api: Api, clock: Clock) -> None:
    token = api.token()
    assert api.client.simulate_get("/api/v0/token/ci", headers=basic()).json[
        "last_used_at"] is None
    api.get("/api/v0/hosts", token)
    first = api.client.simulate_get("/api/v0/token/ci", headers=basic()).json["last_used_at"]
    assert first is not None
    commits = api.store.commits
    for _ in range(5):
        clock.advance(10)
        assert api.get("/api/v0/hosts", token).status_code == 200
    assert api.store.commits == commits  # no store write per request
    assert api.client.simulate_get("/api/v0/token/ci", headers=basic()).json[
        "last_used_at"] == first
    clock.advance(11)  # 61 s after the recorded use
    api.get("/api/v0/hosts", token)
    assert api.store.commits == commits + 1
    later = api.client.simulate_get("/api/v0/token/ci", headers=basic()).json["last_used_at"]
    assert later > first


# -- cluster scope -------------------------------------------------------------------

def _cluster(api: Api, name: str) -> None:
    assert api.client.simulate_put(f"/api/v0/cluster/{name}", json={},
                                   headers=basic()).status_code == 201


def test_a_scoped_token_acts_only_on_its_clusters(api: Api) -> None:
    _cluster(api, "mine")
    _cluster(api, "theirs")
    token = api.token("scoped", role="operator", clusters=["mine"])
    assert api.get("/api/v0/cluster/mine", token).status_code == 200
    assert api.get("/api/v0/cluster/mine/hosts", token).status_code == 200
    for path in ("/api/v0/cluster/theirs", "/api/v0/cluster/theirs/hosts",
                 "/api/v0/cluster/theirs/restart"):
        refused = api.get(path, token)
        assert refused.status_code == 403, path
        assert refused.json["error"]["field"] == "name"
    started = api.client.simulate_put("/api/v0/cluster/theirs/restart", json={},
                                      headers=bearer(token))
    assert started.status_code == 403 and started.json["error"]["field"] == "name"
    # host listings must name one of its clusters
    assert api.get("/api/v0/hosts", token).json["error"]["field"] == "cluster"
    assert api.client.simulate_get("/api/v0/hosts", params={"cluster": "mine"},
                                   headers=bearer(token)).status_code == 200
    # a host placed outside its clusters, or addressed there, is refused
    put = api.client.simulate_put("/api/v0/host/10.1.0.1", headers=bearer(token),
                                  json={"ssh_priv_key": KEY, "cluster": "theirs"})
    assert put.status_code == 403 and put.json["error"]["field"] == "cluster"
    assert api.client.simulate_put("/api/v0/host/10.1.0.2", headers=basic(),
                                   json={"ssh_priv_key": KEY, "cluster": "theirs"}
                                   ).status_code == 201
    addressed = api.get("/api/v0/host/10.1.0.2", token)
    assert addressed.status_code == 403 and addressed.json["error"]["field"] == "address"
    assert api.client.simulate_put("/api/v0/host/10.1.0.3", headers=bearer(token),
                                   json={"ssh_priv_key": KEY, "cluster": "mine"}
                                   ).status_code == 201
    assert api.get("/api/v0/host/10.1.0.3", token).status_code == 200


def test_a_scoped_token_self_registers_only_into_its_clusters(api: Api) -> None:
    _cluster(api, "mine")
    _cluster(api, "theirs")
    token = api.token("reg", role="registrar", clusters=["mine"])
    refused = api.client.simulate_put("/api/v0/host", headers=bearer(token),
                                      json={"ssh_priv_key": KEY, "cluster": "theirs"})
    assert refused.status_code == 403 and refused.json["error"]["field"] == "cluster"
    done = api.client.simulate_put("/api/v0/host", headers=bearer(token),
                                   json={"ssh_priv_key": KEY, "cluster": "mine"})
    assert done.status_code == 201 and done.json["cluster"] == "mine"


def test_a_scoped_admin_token_touches_nothing_shared_by_every_cluster(api: Api) -> None:
    _cluster(api, "mine")
    token = api.token("sa", role="admin", clusters=["mine"])
    for method, path, body in (("GET", "/api/v0/tokens", None),
                               ("PUT", "/api/v0/token/escalate", {"role": "admin"}),
                               ("DELETE", "/api/v0/token/sa", None),
                               ("PUT", "/api/v0/network/n2", {}),
                               ("DELETE", "/api/v0/network/default", None)):
        answer = api.client.simulate_request(method, path, json=body, headers=bearer(token))
        assert answer.status_code == 403, (method, path)
        assert answer.json["error"]["field"] == "scope"
    assert api.client.simulate_get("/api/v0/token/escalate", headers=basic()).status_code == 404


def test_scoped_clusters_must_exist(api: Api) -> None:
    missing = api.create("s", clusters=["nowhere"])
    assert missing.status_code == 409 and missing.json["error"]["field"] == "clusters"


# -- hostile values ---------------------------------------------------------------------

HOSTILE = ["cmt_0123456789abcdef_" + "a" * 42 + "\n", "{{ lookup('pipe','id') }}",
           "cmt_{{ lookup('pipe','id') }}", "cmt_; id", "; id", "cmt_" + "x" * 100_000,
           "cmt_0123456789abcdef_" + "a" * 42 + "é", "cmt_../../etc/passwd_" + "a" * 43]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_token_strings_are_refused_cleanly(api: Api, value: str) -> None:
    answer = api.client.simulate_get("/api/v0/hosts", headers=bearer(value))
    assert answer.status_code == 401
    assert value.strip() not in answer.text or len(value.strip()) < 6
    # none of them reached the storage service's verification as anything but a miss
    assert not [k for k in api.store.data if k.startswith("token")]


@pytest.mark.parametrize("body, field", [
    ({"role": "{{ lookup('pipe','id') }}"}, "role"),
    ({"role": "viewer", "clusters": ["; id"]}, "clusters"),
    ({"role": "viewer", "clusters": ["a\nb"]}, "clusters"),
    ({"role": "viewer", "expires_in": 0}, "expires_in"),
    ({"role": "viewer", "expires_in": 10**12}, "expires_in"),
    ({"role": "viewer", "expires_at": "tomorrow; id"}, "expires_at"),
    ({"role": "viewer", "expires_at": "2030-02-30T00:00:00Z"}, "expires_at"),
    ({"role": "viewer", "token": "cmt_mine"}, "token"),
    ({"role": "viewer", "digest": "00"}, "digest"),
    ({}, "role"),
])
def test_hostile_bodies_are_refused_naming_the_field(api: Api, body: dict[str, Any],
                                                      field: str) -> None:
    answer = api.create("x", **body) if body else api.client.simulate_put(
        "/api/v0/token/x", json={}, headers=basic())
    assert answer.status_code == 400, answer.json
    assert answer.json["error"].get("field") == field or field in answer.json[
        "error"]["description"]


@pytest.mark.parametrize("name", ["a;id", "-x", "x" * 64, "{{x}}"])
def test_hostile_names_are_refused(api: Api, name: str) -> None:
    answer = api.client.simulate_put(f"/api/v0/token/{name}", json={"role": "viewer"},
                                     headers=basic())
    assert answer.status_code == 400


def test_non_commissaire_bearer_values_are_left_to_other_plugins(api: Api) -> None:
    answer = api.client.simulate_get("/api/v0/hosts", headers=bearer("eyJhbGciOi.x.y"))
    assert answer.status_code == 401
    assert answer.json["error"]["description"] != "invalid token"


def test_failed_tokens_count_in_the_failure_throttle() -> None:
    api = Api(auth_failure_limit=3)
    token = api.token()
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    codes = [api.get("/api/v0/hosts", bad).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


# -- never recorded, never logged ---------------------------------------------------------

def test_the_activity_entry_of_a_creation_holds_no_secret(api: Api,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    caplog.set_level(logging.DEBUG)
    token = api.token("ci", role="operator", expires_in=600)
    api.get("/api/v0/hosts", token)
    api.client.simulate_delete("/api/v0/token/ci", headers=basic())
    api.get("/api/v0/hosts", token)
    listed = api.client.simulate_get("/api/v0/events", headers=basic(),
                                     params={"object": "token/ci"})
    entries = [e for e in listed.json if e["object"]["kind"] == "token"]
    assert [e["action"] for e in entries] == ["revoke", "create"]
    create = entries[1]
    assert create["actor"] == {"name": "admin", "method": "basic"}
    assert create["fields"] == {"role": "operator", "expires_in": 600}
    assert create["outcome"]["status"] == 201
    stored = json.dumps(dict(api.events.data.items()))
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored and digest not in stored
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in logged and digest not in logged
