"""Who the caller is, and where the role comes from: users-file roles, role
bindings (users, groups, certificate CNs), no roles configured (today's
behaviour, and the log line saying so), plugins written to the seed's contract,
scoped registrars, the actor on the bus and hostile names in log lines."""
from __future__ import annotations

import argparse
import base64
import json
import logging
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from falcon import testing

from commissaire import errors
from commissaire.bus import BusClient, BusServer, protocol
from commissaire.bus.clients import ServiceClient
from commissaire.config import ConfigError, load_server_config
from commissaire.identity import Identity, Role
from commissaire_http import server
from commissaire_http.authentication.httpbasicauth import HTTPBasicAuth
from commissaire_http.authentication.roles import NO_ROLES_CONFIGURED
from commissaire_service.service import Service, bus_method, current_actor
from tests.unit.fakes import DictStore, DirectBus, api_client

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
HEADERS = "tests.support.headerplugin"
SEED = "tests.support.seedplugin"
OLD = "tests.support.oldplugin"
KEY = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").decode()


def basic(user: str, password: str = "pw") -> dict[str, str]:
    return {"Authorization": "Basic "
            + base64.b64encode(f"{user}:{password}".encode()).decode()}


def as_user(name: str, groups: str = "", clusters: str = "") -> dict[str, str]:
    """Credentials for the header plugin (tests/support/headerplugin.py)."""
    headers = {"X-Test-User": name}
    if groups:
        headers["X-Test-Groups"] = groups
    if clusters:
        headers["X-Test-Clusters"] = clusters
    return headers


def delete_host(client: testing.TestClient, headers: dict[str, str]) -> testing.Result:
    return client.simulate_delete("/api/v0/host/127.0.9.1", headers=headers)


def refused_for(answer: testing.Result, needed: str, has: str) -> bool:
    return answer.status_code == 403 and answer.json["error"]["description"] == \
        f"needs the {needed} role; you are {has}"


def no_role_bound(answer: testing.Result) -> bool:
    return answer.status_code == 403 and \
        answer.json["error"]["description"].startswith("no role is bound to this caller")


# -- the users file -----------------------------------------------------------------

def test_a_users_file_names_each_users_role(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"vic": {"hash": HASH, "role": "viewer"},
                                "ops": {"hash": HASH, "role": "operator"}}))
    client = api_client(DictStore(), {}, more_plugins=(
        {"name": "commissaire_http.authentication.httpbasicauth", "filepath": str(path)},))
    assert refused_for(delete_host(client, basic("vic")), "operator", "viewer")
    assert delete_host(client, basic("ops")).status_code == 404  # allowed: no such host
    # A user without a role, once roles are configured, has none.
    path.write_text(json.dumps({"vic": {"hash": HASH, "role": "viewer"},
                                "nobody": {"hash": HASH}}))
    assert no_role_bound(client.simulate_get("/api/v0/hosts", headers=basic("nobody")))


def test_a_users_file_role_must_be_a_role() -> None:
    with pytest.raises(ConfigError, match=r"user 'bob': role 'root' is not a role"):
        HTTPBasicAuth(users={"bob": {"hash": HASH, "role": "root"}})


def test_the_users_file_role_comes_before_the_bindings() -> None:
    client = api_client(DictStore(), {"ann": {"hash": HASH, "role": "viewer"}},
                        role_bindings={"users": {"ann": "admin"}})
    assert refused_for(delete_host(client, basic("ann")), "operator", "viewer")


# -- role bindings ---------------------------------------------------------------------

def header_client(bindings: dict[str, Any], **settings: Any) -> testing.TestClient:
    return api_client(DictStore(), {}, more_plugins=({"name": HEADERS},),
                      role_bindings=bindings, **settings)


def test_groups_bind_roles_and_the_strongest_wins() -> None:
    client = header_client({"groups": {"ops": "operator", "watchers": "viewer"}})
    assert delete_host(client, as_user("carol", groups="watchers,ops")).status_code == 404
    assert refused_for(delete_host(client, as_user("dave", groups="watchers")),
                       "operator", "viewer")
    assert no_role_bound(delete_host(client, as_user("erin", groups="strangers")))
    assert no_role_bound(client.simulate_get("/api/v0/hosts", headers=as_user("erin")))


def test_a_user_binding_comes_before_the_groups() -> None:
    client = header_client({"users": {"dave": "viewer"}, "groups": {"ops": "admin"}})
    assert refused_for(delete_host(client, as_user("dave", groups="ops")),
                       "operator", "viewer")


class PeerSocket:
    """What gunicorn puts in the environ for a TLS connection with a verified
    client certificate."""

    def __init__(self, cn: str) -> None:
        self.cn = cn

    def getpeercert(self) -> dict[str, Any]:
        return {"subject": ((("commonName", self.cn),),)}


def test_certificate_cns_bind_roles_and_only_to_certificates() -> None:
    client = api_client(DictStore(), {}, more_plugins=(
        {"name": "commissaire_http.authentication.httpauthclientcert"},),
        role_bindings={"certificates": {"build.example.com": "registrar"},
                       "users": {"mallory": "admin"}})

    def with_cert(cn: str, method: str, path: str, body: str = "{}") -> testing.Result:
        return client.simulate_request(method, path, body=body,
                                       extras={"gunicorn.socket": PeerSocket(cn)},
                                       remote_addr="127.0.0.9")

    assert refused_for(with_cert("build.example.com", "GET", "/api/v0/hosts"),
                       "viewer", "registrar")
    registered = with_cert("build.example.com", "PUT", "/api/v0/host",
                           json.dumps({"ssh_priv_key": KEY}))
    assert registered.status_code == 201, registered.text
    # A user binding never matches a certificate CN of the same name.
    assert no_role_bound(with_cert("mallory", "GET", "/api/v0/hosts"))


@pytest.mark.parametrize("bindings, message", [
    ({"users": {"alice": "root"}}, "role-bindings: users.alice: 'root' is not a role"),
    ({"people": {"alice": "admin"}}, "role-bindings: 'people' is not a kind of binding"),
    ({"groups": ["ops"]}, "role-bindings: groups: must map names to roles"),
    ({"users": {"a\nb": "admin"}}, r"role-bindings: users: 'a\\nb' is a name with control"),
    ({"tokens": {"": "admin"}}, "role-bindings: tokens: '' is an empty name"),
    (["admin"], "role-bindings: must be an object"),
])
def test_bad_bindings_are_refused_at_load_naming_the_entry(
        tmp_path: Path, bindings: object, message: str) -> None:
    path = tmp_path / "commissaire.conf"
    path.write_text(json.dumps({"role-bindings": bindings}))
    with pytest.raises(ConfigError) as refused:
        load_server_config(argparse.Namespace(config=str(path), no_config_file=False))
    assert str(refused.value).startswith(message.replace("\\\\", "\\"))


def test_bindings_load_from_the_configuration_file(tmp_path: Path) -> None:
    path = tmp_path / "commissaire.conf"
    path.write_text(json.dumps({"role-bindings": {"groups": {"ops": "operator"}}}))
    config = load_server_config(argparse.Namespace(config=str(path), no_config_file=False))
    assert config.bindings().groups == {"ops": Role.OPERATOR}


# -- no roles configured: today's behaviour -------------------------------------------

def test_without_roles_every_authenticated_caller_is_admin() -> None:
    client = header_client({})
    answer = client.simulate_get("/api/v0/host/127.0.9.1/creds", headers=as_user("anyone"))
    assert answer.status_code == 404  # admin: allowed, there is no such host
    assert client.simulate_put("/api/v0/network/n1", headers=as_user("anyone"),
                               body="{}").status_code == 201


def start_server(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any],
                 tmp_path: Path) -> int:
    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: None)
    path = tmp_path / "commissaire.conf"
    path.write_text(json.dumps(config))
    return server.main(["-c", str(path)])


def test_the_server_says_once_at_start_that_no_roles_are_configured(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"a": {"hash": HASH}}))
    plugin = {"name": "commissaire_http.authentication.httpbasicauth", "filepath": str(users)}
    with caplog.at_level(logging.INFO):
        assert start_server(monkeypatch, {"authentication-plugins": [plugin]}, tmp_path) == 0
    assert [r.getMessage() for r in caplog.records].count(NO_ROLES_CONFIGURED) == 1
    caplog.clear()
    for roles in ({"role-bindings": {"users": {"a": "viewer"}}},
                  {"authentication-plugins": [{**plugin, "role": "viewer"}]}):
        with caplog.at_level(logging.INFO):
            assert start_server(monkeypatch, {"authentication-plugins": [plugin], **roles},
                                tmp_path) == 0
        assert NO_ROLES_CONFIGURED not in [r.getMessage() for r in caplog.records]
    users.write_text(json.dumps({"a": {"hash": HASH, "role": "operator"}}))
    with caplog.at_level(logging.INFO):
        assert start_server(monkeypatch, {"authentication-plugins": [plugin]}, tmp_path) == 0
    assert NO_ROLES_CONFIGURED not in [r.getMessage() for r in caplog.records]


# -- plugins written to the seed's contract, and this repository's first style ----------

def test_a_seed_style_plugin_loads_from_configuration_with_a_role(tmp_path: Path) -> None:
    path = tmp_path / "commissaire.conf"
    entry = {"name": SEED, "password": "s3cret", "role": "viewer"}
    path.write_text(json.dumps({"authentication-plugins": [entry]}))
    config = load_server_config(argparse.Namespace(config=str(path), no_config_file=False))
    bus = DirectBus()
    client = api_client(DictStore(), {}, more_plugins=tuple(config.authentication_plugins),
                        bus=bus)
    assert client.simulate_get("/api/v0/hosts", headers={"X-Seed": "s3cret"}).status_code == 200
    assert refused_for(delete_host(client, {"X-Seed": "s3cret"}), "operator", "viewer")
    # Its own WSGI answer (a teapot) is no admission, and is not sent.
    assert client.simulate_get("/api/v0/hosts", headers={"X-Seed": "guess"}).status_code == 401
    assert ("storage.list_hosts", {"name": SEED, "method": f"plugin:{SEED}", "role": "viewer",
                                   "groups": [], "clusters": []}) in bus.actors


def test_a_plugin_role_must_be_a_role(tmp_path: Path) -> None:
    path = tmp_path / "commissaire.conf"
    path.write_text(json.dumps({"authentication-plugins": [{"name": SEED, "role": "god"}]}))
    with pytest.raises(ConfigError, match=f"{SEED}: role 'god' is not a role"):
        load_server_config(argparse.Namespace(config=str(path), no_config_file=False))


def test_a_seed_style_plugin_without_a_role_keeps_todays_powers() -> None:
    client = api_client(DictStore(), {}, more_plugins=({"name": SEED},))
    answer = client.simulate_put("/api/v0/network/n1", headers={"X-Seed": "open-sesame"},
                                 body="{}")
    assert answer.status_code == 201


def test_a_true_false_plugin_gets_its_entrys_role() -> None:
    client = api_client(DictStore(), {}, more_plugins=({"name": OLD, "role": "operator"},))
    assert delete_host(client, {"X-Old": "yes"}).status_code == 404
    assert refused_for(client.simulate_delete("/api/v0/network/n1", headers={"X-Old": "yes"}),
                       "admin", "operator")
    assert delete_host(client, {"X-Old": "no"}).status_code == 401


# -- scoped registrars --------------------------------------------------------------------

def test_a_scoped_registrar_registers_only_into_its_clusters() -> None:
    store = DictStore()
    client = api_client(store, {"root": {"hash": HASH, "role": "admin"}},
                        more_plugins=({"name": HEADERS},),
                        role_bindings={"users": {"reg": "registrar"}})
    for name in ("edge", "core"):
        assert client.simulate_put(f"/api/v0/cluster/{name}", headers=basic("root"),
                                   body="{}").status_code == 201
    before = dict(store.data)
    scoped = as_user("reg", clusters="edge")
    for body in ({"ssh_priv_key": KEY, "cluster": "core"}, {"ssh_priv_key": KEY}):
        answer = client.simulate_put("/api/v0/host", headers=scoped, body=json.dumps(body),
                                     remote_addr="127.0.0.9")
        assert answer.status_code == 403
        assert answer.json["error"]["field"] == "cluster"
        assert answer.json["error"]["description"] == \
            "cluster: you may register hosts only into edge"
    assert store.data == before
    answer = client.simulate_put("/api/v0/host", headers=scoped, remote_addr="127.0.0.9",
                                 body=json.dumps({"ssh_priv_key": KEY, "cluster": "edge"}))
    assert answer.status_code == 201, answer.text
    members = client.simulate_get("/api/v0/cluster/edge/hosts", headers=basic("root"))
    assert members.json == ["127.0.0.9"]


# -- the actor on the bus --------------------------------------------------------------------

def test_bus_calls_made_for_a_request_name_its_caller() -> None:
    bus = DirectBus()
    client = api_client(DictStore(), {"ann": {"hash": HASH, "role": "admin"}}, bus=bus,
                        self_auths=["/api/v0/host"])
    assert client.simulate_put("/api/v0/cluster/c1", headers=basic("ann"),
                               body="{}").status_code == 201
    ann = {"name": "ann", "method": "basic", "role": "admin", "groups": [], "clusters": []}
    assert ("storage.create", ann) in bus.actors
    # An anonymous self-registration is made for nobody.
    bus.actors.clear()
    assert client.simulate_put("/api/v0/host", body=json.dumps({"ssh_priv_key": KEY}),
                               remote_addr="127.0.0.9").status_code == 201
    assert bus.actors and all(actor is None for _method, actor in bus.actors)


class WhoAmI(Service):
    name = "whoami"

    @bus_method()
    def whoami(self) -> dict[str, object] | None:
        actor = current_actor()
        return None if actor is None else actor.to_dict()


class WhoAmIClient(ServiceClient):
    service = "whoami"

    def whoami(self) -> Any:
        return self._call("whoami.whoami", {})


def test_a_service_sees_who_a_call_was_made_for(request: pytest.FixtureRequest) -> None:
    exchange = f"test-actor-{id(request)}"
    service = WhoAmI()
    bus_server = BusServer("inproc://", exchange, "whoami", service.routing_keys,
                           service.dispatch)
    bus_server.start()
    client = BusClient("inproc://", exchange, timeout=5)
    try:
        assert bus_server.ready.wait(10)
        who = Identity(name="ci", method="token", role=Role.REGISTRAR, clusters=("edge",))
        assert WhoAmIClient(client, actor=who).whoami() == who.to_dict()
        assert WhoAmIClient(client).whoami() is None  # the control plane's own call
    finally:
        client.close()
        bus_server.stop()
    assert current_actor() is None


def test_a_malformed_actor_is_an_invalid_request() -> None:
    message = protocol.request("whoami.whoami", {}, "1")
    assert protocol.parse_actor(message) is None
    for actor in ("admin", {"name": "x"}, {"name": "x", "method": "basic", "role": "root"}):
        with pytest.raises(errors.InvalidRequest, match="^actor: "):
            protocol.parse_actor({**message, "actor": actor})


# -- hostile names ----------------------------------------------------------------------------

def test_a_user_name_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    forger = "eve\n2024-01-01 INFO commissaire_http - admin logged in"  # no ":" in a user
    password = "hunter2-do-not-log"
    users = {forger: {"hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
                      "role": "viewer"}}
    client = api_client(DictStore(), users)
    with caplog.at_level(logging.DEBUG):
        assert delete_host(client, basic(forger, password)).status_code == 403
    lines = [record.getMessage() for record in caplog.records]
    assert any("'eve\\n2024-01-01 INFO" in line and "(basic)" in line for line in lines), lines
    assert not any("\n" in line for line in lines)
    assert password not in caplog.text
    assert basic(forger, password)["Authorization"].split()[1] not in caplog.text
