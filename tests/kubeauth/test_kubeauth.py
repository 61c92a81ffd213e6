"""The Kubernetes authentication plugin against the stand-in's TokenReview over TLS:
who is admitted with which role, what is refused, what is cached and for how long,
and what a broken or hostile API server cannot do."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from commissaire.config import ConfigError, build_server_parser, load_server_config
from commissaire.rolebindings import RoleBindings
from commissaire_http.authentication import kubeauth
from commissaire_http.authentication.plugins import load_plugin
from commissaire_http.authentication.roles import RoleResolver
from tests.k8s_standin.server import TOKEN_REVIEWS, KubeStandIn
from tests.kubeauth.conftest import BINDINGS, PLUGIN, SERVER_TOKEN, bearer, plugin_entry
from tests.unit.fakes import DictStore, api_client

Client = Callable[..., testing.TestClient]
VIEWER_PATH = "/api/v0/clusters"
ADMIN_PATH = "/api/v0/network/nothing-here"  # DELETE: admin, checked before the query


def reviews(standin: KubeStandIn) -> int:
    return standin.count("POST", TOKEN_REVIEWS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(kubeauth, "monotonic", fake)
    return fake


# -- admitted ------------------------------------------------------------------------


def test_a_token_is_its_user_with_the_role_bound_to_its_group(standin: KubeStandIn,
                                                              make_client: Client) -> None:
    standin.add_token("alice-token", "alice@example.com",
                      ["system:authenticated", "k8s-viewers"])
    client = make_client()
    ok = client.simulate_get(VIEWER_PATH, headers=bearer("alice-token"))
    assert ok.status_code == 200, ok.text
    refused = client.simulate_delete(ADMIN_PATH, headers=bearer("alice-token"))
    assert refused.status_code == 403
    assert refused.json["error"]["description"] == "needs the admin role; you are viewer"
    # The stand-in was asked with the server's credential, as the real API wants.
    assert reviews(standin) == 1


def test_a_user_binding_and_the_strongest_group(standin: KubeStandIn,
                                                make_client: Client) -> None:
    standin.add_token("sa-token", "system:serviceaccount:ops:deployer",
                      ["system:serviceaccounts", "k8s-viewers"])
    standin.add_token("both-token", "bob", ["k8s-viewers", "k8s-admins"])
    client = make_client()
    # The user's own binding (operator) wins over its group's (viewer).
    assert client.simulate_get(VIEWER_PATH, headers=bearer("sa-token")).status_code == 200
    assert client.simulate_delete(ADMIN_PATH, headers=bearer("sa-token")).json["error"][
        "description"] == "needs the admin role; you are operator"
    assert client.simulate_delete(ADMIN_PATH, headers=bearer("both-token")).status_code == 404


def test_a_user_nothing_binds_is_403_once_roles_exist(standin: KubeStandIn,
                                                      make_client: Client) -> None:
    standin.add_token("carol-token", "carol", ["system:authenticated"])
    answer = make_client().simulate_get(VIEWER_PATH, headers=bearer("carol-token"))
    assert answer.status_code == 403
    assert "no role is bound" in answer.json["error"]["description"]


def test_audiences_are_sent_and_checked(standin: KubeStandIn, make_client: Client) -> None:
    standin.add_token("ours", "dave", ["k8s-viewers"], audiences=["commissaire"])
    standin.add_token("theirs", "erin", ["k8s-viewers"], audiences=["vault"])
    client = make_client(audiences=["commissaire"])
    assert client.simulate_get(VIEWER_PATH, headers=bearer("ours")).status_code == 200
    assert client.simulate_get(VIEWER_PATH, headers=bearer("theirs")).status_code == 401
    # Without audiences the API server's own audience applies: a token meant only
    # for commissaire is not valid there.
    assert make_client().simulate_get(VIEWER_PATH, headers=bearer("ours")).status_code == 401


def test_prefixes_keep_kubernetes_names_apart(standin: KubeStandIn,
                                              make_client: Client) -> None:
    standin.add_token("alice-token", "alice", ["k8s-viewers", "ops"])
    bindings = {"users": {"alice": "admin"}, "groups": {"k8s:ops": "viewer"}}
    client = make_client(user_prefix="k8s:", group_prefix="k8s:", role_bindings=bindings)
    # Not the "alice" of the users file: the prefixed group's role.
    answer = client.simulate_delete(ADMIN_PATH, headers=bearer("alice-token"))
    assert answer.json["error"]["description"] == "needs the admin role; you are viewer"


# -- refused ----------------------------------------------------------------------------


def test_an_unknown_token_is_401(standin: KubeStandIn, make_client: Client) -> None:
    answer = make_client().simulate_get(VIEWER_PATH, headers=bearer("nobody-knows-me"))
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer.headers
    assert reviews(standin) == 1


def test_authenticated_false_is_401_and_counted(standin: KubeStandIn,
                                                make_client: Client) -> None:
    client = make_client(auth_failure_limit=3)
    codes = [client.simulate_get(VIEWER_PATH, headers=bearer(f"guess-{i}")).status_code
             for i in range(4)]
    assert codes == [401, 401, 401, 429]
    assert reviews(standin) == 3  # the throttled one cost the API nothing


def test_a_malformed_bearer_value_is_never_sent_on(standin: KubeStandIn,
                                                   make_client: Client) -> None:
    client = make_client()
    for value in ("Bearer ", "Bearer a b", "Bearer \u00e9t\u00e9", "Bearer " + "x" * 20000):
        answer = client.simulate_get(VIEWER_PATH, headers={"Authorization": value})
        assert answer.status_code in (400, 401), value
    assert reviews(standin) == 0


def test_an_api_token_is_left_to_its_own_plugin(standin: KubeStandIn,
                                                make_client: Client) -> None:
    standin.add_token("cmt_abc123", "mallory", ["k8s-admins"])
    client = make_client()
    assert client.simulate_get(VIEWER_PATH, headers=bearer("cmt_abc123")).status_code == 401
    assert reviews(standin) == 0
    assert client.simulate_get(VIEWER_PATH, headers={
        "Authorization": "Basic bm9ib2R5Om5vdGhpbmc="}).status_code == 401
    assert reviews(standin) == 0


# -- cache ------------------------------------------------------------------------------


def test_answers_are_cached_for_cache_seconds(standin: KubeStandIn, make_client: Client,
                                              clock: Clock) -> None:
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    client = make_client(cache_seconds=10)
    for _ in range(3):
        assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200
    assert reviews(standin) == 1
    # Revoked in Kubernetes: still admitted until the answer expires (the trade-off).
    standin.remove_token("alice-token")
    clock.now += 9.5
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200
    assert reviews(standin) == 1
    clock.now += 1
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 401
    assert reviews(standin) == 2


def test_refusals_are_cached_too(standin: KubeStandIn, make_client: Client,
                                 clock: Clock) -> None:
    client = make_client(cache_seconds="5")  # as --authentication-plugin gives it
    assert client.simulate_get(VIEWER_PATH, headers=bearer("late-token")).status_code == 401
    standin.add_token("late-token", "late", ["k8s-viewers"])
    assert client.simulate_get(VIEWER_PATH, headers=bearer("late-token")).status_code == 401
    assert reviews(standin) == 1
    clock.now += 5
    assert client.simulate_get(VIEWER_PATH, headers=bearer("late-token")).status_code == 200
    assert reviews(standin) == 2


def test_cache_seconds_zero_asks_every_time(standin: KubeStandIn, make_client: Client) -> None:
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    client = make_client(cache_seconds=0)
    for _ in range(3):
        assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200
    assert reviews(standin) == 3


def test_the_cache_holds_no_token_and_is_bounded(standin: KubeStandIn,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubeauth, "CACHE_LIMIT", 3)
    plugin = load_plugin(plugin_entry(standin)).authenticator
    assert isinstance(plugin, kubeauth.KubernetesAuth)
    for i in range(5):
        plugin._review(f"token-{i}")
    assert len(plugin._cache) == 3
    assert not any(b"token-" in key for key in plugin._cache)


def test_a_cached_good_token_passes_a_throttled_address(standin: KubeStandIn,
                                                        make_client: Client) -> None:
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    client = make_client(auth_failure_limit=2)
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200
    for i in range(2):
        client.simulate_get(VIEWER_PATH, headers=bearer(f"bad-{i}"))
    assert client.simulate_get(VIEWER_PATH, headers=bearer("bad-x")).status_code == 429
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200


def test_concurrent_reviews_are_bounded(standin: KubeStandIn, make_client: Client) -> None:
    standin.add_token("slow-token", "alice", ["k8s-viewers"])
    standin.before("POST", TOKEN_REVIEWS, lambda: time.sleep(1.5))
    client = make_client(max_concurrent=1)
    answers: dict[str, Any] = {}

    def call(token: str) -> None:
        answers[token] = client.simulate_get(VIEWER_PATH, headers=bearer(token))

    first = threading.Thread(target=call, args=("slow-token",))
    first.start()
    while reviews(standin) == 0:
        time.sleep(0.01)
    call("other-token")  # no slot within 0.5 s
    first.join(10)
    assert answers["slow-token"].status_code == 200
    assert answers["other-token"].status_code == 429
    assert answers["other-token"].headers["Retry-After"] == "1"
    assert reviews(standin) == 1


# -- the server's credential --------------------------------------------------------------


def test_the_server_credential_never_reaches_logs_or_answers(
        standin: KubeStandIn, make_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    client = make_client()
    texts = [client.simulate_get(VIEWER_PATH, headers=bearer(t)).text
             for t in ("alice-token", "unknown-token")]
    standin.token = "rotated-elsewhere"  # our credential is now refused: logged, 503
    refused = client.simulate_get(VIEWER_PATH, headers=bearer("another-token"))
    assert refused.status_code == 503
    assert "refused this server's credential" in refused.json["error"]["description"]
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "create tokenreviews" in logged
    for secret in (SERVER_TOKEN, "alice-token", "unknown-token", "another-token"):
        assert secret not in logged
        assert all(secret not in text for text in [*texts, refused.text])
    plugin = load_plugin(plugin_entry(standin)).authenticator
    assert SERVER_TOKEN not in repr(plugin) and SERVER_TOKEN not in str(vars(plugin).keys())


def test_a_token_file_is_read_and_re_read_when_it_rotates(standin: KubeStandIn,
                                                          make_client: Client,
                                                          tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SERVER_TOKEN + "\n")
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    client = make_client(token=None, token_file=str(token_file), cache_seconds=0)
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200
    standin.token = "rotated-token-2"
    token_file.write_text("rotated-token-2")
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200


# -- a broken or hostile API server -------------------------------------------------------


def test_the_api_down_is_503_with_a_reason_never_500(standin: KubeStandIn,
                                                     make_client: Client) -> None:
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    client = make_client(auth_failure_limit=2)
    standin.stop()
    for _ in range(3):  # not counted as failures: no 429
        answer = client.simulate_get(VIEWER_PATH, headers=bearer("alice-token"))
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "5"
        assert answer.json["error"]["description"] == (
            "bearer tokens cannot be checked now: the Kubernetes API cannot be reached; "
            "retry later")


def test_a_slow_api_is_503_after_request_timeout(standin: KubeStandIn,
                                                 make_client: Client) -> None:
    standin.before("POST", TOKEN_REVIEWS, lambda: time.sleep(1.5))
    answer = make_client(request_timeout=0.5).simulate_get(VIEWER_PATH,
                                                           headers=bearer("t"))
    assert answer.status_code == 503
    assert "did not answer in time" in answer.json["error"]["description"]


def test_an_untrusted_certificate_is_503(standin: KubeStandIn, make_client: Client,
                                         tmp_path: Path) -> None:
    other = KubeStandIn(tls=True, pki_dir=tmp_path)
    assert other.pki is not None
    answer = make_client(certificate_authority=str(other.pki.ca_cert)).simulate_get(
        VIEWER_PATH, headers=bearer("t"))
    assert answer.status_code == 503
    assert "TLS with the Kubernetes API failed" in answer.json["error"]["description"]


HOSTILE: list[tuple[str, int, Any]] = [
    ("not JSON", 201, "just text"),
    ("a list", 201, []),
    ("another kind", 201, {"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    ("authenticated as text", 201, {"kind": "TokenReview", "apiVersion": kubeauth.API_VERSION,
                                    "status": {"authenticated": "true",
                                               "user": {"username": "x"}}}),
    ("user a list", 201, {"kind": "TokenReview", "apiVersion": kubeauth.API_VERSION,
                          "status": {"authenticated": True, "user": ["admin"]}}),
    ("username a number", 201, {"kind": "TokenReview", "apiVersion": kubeauth.API_VERSION,
                                "status": {"authenticated": True, "user": {"username": 0}}}),
    ("groups a string", 201, {"kind": "TokenReview", "apiVersion": kubeauth.API_VERSION,
                              "status": {"authenticated": True,
                                         "user": {"username": "x", "groups": "k8s-admins"}}}),
    ("groups of objects", 201, {"kind": "TokenReview", "apiVersion": kubeauth.API_VERSION,
                                "status": {"authenticated": True, "user": {
                                    "username": "x", "groups": [{"name": "k8s-admins"}]}}}),
    ("a redirect", 302, {"kind": "Status"}),
    ("a server error", 500, {"kind": "Status", "message": "REMOTE-WORDS"}),
]


@pytest.mark.parametrize(("what", "code", "body"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_answers_that_are_not_a_token_review_are_503(standin: KubeStandIn, make_client: Client,
                                                     what: str, code: int, body: Any) -> None:
    standin.review_answer = (code, body)
    answer = make_client().simulate_get(VIEWER_PATH, headers=bearer("t"))
    assert answer.status_code == 503, (what, answer.text)
    assert "REMOTE-WORDS" not in answer.text


def _authenticated(user: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "TokenReview", "apiVersion": kubeauth.API_VERSION, "metadata": {},
            "status": {"authenticated": True, "user": user}}


def test_a_user_name_with_a_newline_is_refused_and_logged_escaped(
        standin: KubeStandIn, make_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    standin.review_answer = (201, _authenticated(
        {"username": "admin\nINFO forged log line", "groups": ["k8s-admins"]}))
    answer = make_client().simulate_get(VIEWER_PATH, headers=bearer("t"))
    assert answer.status_code == 401
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert "forged log line" in caplog.text  # said, escaped on one line


def test_ten_thousand_groups_are_bounded_and_a_bound_one_kept(standin: KubeStandIn,
                                                              make_client: Client) -> None:
    groups = [f"team-{i}" for i in range(10_000)] + ["bad\ngroup", "x" * 300, "k8s-viewers"]
    standin.review_answer = (201, _authenticated({"username": "many", "groups": groups}))
    roles = RoleResolver(RoleBindings.parse(BINDINGS))
    identity = load_plugin(plugin_entry(standin), roles).authenticator.identify(_request("t"))
    assert not isinstance(identity, bool)
    assert len(identity.groups) == kubeauth.MAX_GROUPS and identity.groups[0] == "k8s-viewers"
    assert all(g.isprintable() and len(g) <= 256 for g in identity.groups)
    assert make_client().simulate_get(VIEWER_PATH, headers=bearer("t")).status_code == 200


def test_an_answer_over_a_mebibyte_is_not_read_whole(standin: KubeStandIn,
                                                     make_client: Client) -> None:
    standin.review_answer = (201, _authenticated({"username": "big",
                                                  "groups": ["g" * 200] * 6000}))
    answer = make_client().simulate_get(VIEWER_PATH, headers=bearer("t"))
    assert answer.status_code == 503


def _request(token: str) -> Any:
    return testing.create_req(headers=bearer(token))


# -- configuration --------------------------------------------------------------------------


def test_the_plugin_loads_from_the_server_configuration(standin: KubeStandIn,
                                                        tmp_path: Path) -> None:
    assert standin.pki is not None
    standin.add_token("alice-token", "alice", ["k8s-viewers"])
    path = tmp_path / "commissaire.conf"
    path.write_text(json.dumps({
        "authentication-plugins": [plugin_entry(standin, cache_seconds=3)],
        "role-bindings": {"groups": {"k8s-viewers": "viewer"}}}))
    config = load_server_config(build_server_parser("t", "t").parse_args(["-c", str(path)]))
    client = api_client(DictStore(), {}, more_plugins=tuple(config.authentication_plugins),
                        role_bindings=config.role_bindings)
    assert client.simulate_get(VIEWER_PATH, headers=bearer("alice-token")).status_code == 200
    # The flag form (strings) works too.
    flag = (f"{PLUGIN}:server_url={standin.url},certificate_authority={standin.pki.ca_cert},"
            f"token={SERVER_TOKEN},cache_seconds=0,request_timeout=5")
    config = load_server_config(build_server_parser("t", "t").parse_args(
        ["--no-config-file", "--authentication-plugin", flag]))
    plugin = load_plugin(config.authentication_plugins[0]).authenticator
    assert isinstance(plugin, kubeauth.KubernetesAuth) and plugin.cache_seconds == 0


@pytest.mark.parametrize(("options", "says"), [
    ({"server_url": None}, "server_url"),
    ({"server_url": "http://127.0.0.1:6443"}, "https://"),
    ({"server_url": "https://user:pw@k8s:6443"}, "user information"),
    ({"server_url": "https://k8s:6443?x=1"}, "query"),
    ({"token": None}, "token or as token_file"),
    ({"token_file": "/etc/hostname"}, "one of them"),
    ({"token": None, "token_file": "relative/token"}, "absolute"),
    ({"token": "two words"}, "printable ASCII"),
    ({"certificate_authority": "/nonexistent/ca.pem"}, "not a readable file"),
    ({"cache_seconds": -1}, "cache_seconds"),
    ({"cache_seconds": "soon"}, "cache_seconds"),
    ({"request_timeout": 0}, "request_timeout"),
    ({"audiences": [1]}, "audiences"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"user_prefix": "a\nb"}, "user_prefix"),
])
def test_bad_options_are_refused_at_start(standin: KubeStandIn, options: dict[str, Any],
                                          says: str) -> None:
    entry = plugin_entry(standin)
    for key, value in options.items():
        entry[key] = value
        if value is None:
            del entry[key]
    with pytest.raises(ConfigError) as refused:
        load_plugin(entry)
    assert says in str(refused.value)
    assert SERVER_TOKEN not in str(refused.value)
