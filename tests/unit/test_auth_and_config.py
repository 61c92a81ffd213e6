"""Authentication plugins and server configuration, without a network."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import bcrypt
import falcon
import pytest
from falcon import testing

from commissaire.config import ConfigError, build_server_parser, load_server_config
from commissaire_http.authentication import build_auth_middleware


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": True}


def app_with(plugins: list[dict], self_auths: list[str] | None = None) -> testing.TestClient:
    from commissaire import errors
    from commissaire_http.app import _handle_commissaire_error

    app = falcon.App(middleware=[build_auth_middleware(plugins, self_auths or [])])
    app.add_route("/api/v0/x", Hello())
    app.add_route("/api/v0/secrets", Hello())
    app.add_error_handler(errors.CommissaireError, _handle_commissaire_error)
    return testing.TestClient(app)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"a": {"hash": bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()}}))
    return path


def test_no_plugin_refuses_everything() -> None:
    result = app_with([]).simulate_get("/api/v0/x", headers=basic("a", "a"))
    assert result.status_code == 401


def test_basic_auth_from_a_users_file(users_file: Path) -> None:
    client = app_with([{"name": "commissaire_http.authentication.httpbasicauth",
                        "filepath": str(users_file)}])
    assert client.simulate_get("/api/v0/x", headers=basic("a", "a")).status_code == 200
    assert client.simulate_get("/api/v0/x", headers=basic("a", "b")).status_code == 401
    assert client.simulate_get("/api/v0/x", headers=basic("b", "a")).status_code == 401
    # A changed file is read again: the cached success of the old password is gone.
    users_file.write_text(json.dumps({"a": {"hash": bcrypt.hashpw(b"new", bcrypt.gensalt(4))
                                            .decode()}}))
    assert client.simulate_get("/api/v0/x", headers=basic("a", "a")).status_code == 401
    assert client.simulate_get("/api/v0/x", headers=basic("a", "new")).status_code == 200


def test_a_password_over_bcrypts_limit_is_a_clear_400(users_file: Path) -> None:
    client = app_with([{"name": "commissaire_http.authentication.httpbasicauth",
                        "filepath": str(users_file)}])
    result = client.simulate_get("/api/v0/x", headers=basic("a", "x" * 73))
    assert result.status_code == 400
    assert "72" in result.json["error"]["description"]


def test_self_auth_paths_skip_authentication() -> None:
    client = app_with([], self_auths=["/api/v0/secrets"])
    assert client.simulate_get("/api/v0/secrets").status_code == 200
    assert client.simulate_get("/api/v0/x").status_code == 401


def test_plugins_are_tried_in_order(users_file: Path) -> None:
    client = app_with([
        {"name": "commissaire_http.authentication.httpauthclientcert", "cn": "operator"},
        {"name": "commissaire_http.authentication.httpbasicauth", "filepath": str(users_file)}])
    # No client certificate here: the first plugin has nothing to say, the second admits.
    assert client.simulate_get("/api/v0/x", headers=basic("a", "a")).status_code == 200


def test_an_unknown_plugin_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope.plugin"):
        build_auth_middleware([{"name": "nope.plugin"}], [])


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return load_server_config(build_server_parser("t", "t").parse_args(list(argv)))


def test_file_then_flags(tmp_path: Path) -> None:
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({
        "listen-port": 9001, "bus-uri": "redis://127.0.0.1:7000/", "self-auths": ["/x"],
        "authentication-plugins": [{"name": "commissaire_http.authentication.httpbasicauth",
                                    "filepath": "conf/users.json"}]}))
    config = parse("-c", str(conf), "-p", "9002", "--authentication-plugin",
                   "commissaire_http.authentication.httpbasicauth:filepath=/u.json,x=1")
    assert config.listen_port == 9002 and config.bus_uri == "redis://127.0.0.1:7000/"
    assert config.self_auths == ["/x"]
    assert config.authentication_plugins == [{
        "name": "commissaire_http.authentication.httpbasicauth", "filepath": "/u.json", "x": "1"}]


def test_no_config_file_ignores_the_default() -> None:
    assert parse("--no-config-file").listen_port == 8000


@pytest.mark.parametrize("content, message", [
    ('{"listen-port": 70000}', "listen-port"),
    ('{"nonsense": 1}', "unknown key 'nonsense'"),
    ("{not json", "not valid JSON"),
    ('{"trusted-proxies": ["bogus"]}', "trusted-proxies"),
])
def test_bad_config_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    conf = tmp_path / "c.json"
    conf.write_text(content)
    with pytest.raises(ConfigError, match=message):
        parse("-c", str(conf))


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls-pemfile"):
        parse("--no-config-file", "--tls-pemfile", str(tmp_path / "missing.pem"))
