"""Hostile values at the API edge: each is a 400 naming the field, and nothing is stored.

The REST app with the real storage service behind a direct bus (as test_api.py):
every value below once reached Ansible, a file on a host or a shell, or made the
server answer 500.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
from falcon import testing

from tests.unit.fakes import DictStore, api_client
from tests.unit.test_api import AUTH, KEY, USERS, get, put

TEMPLATE = "{{ lookup('pipe', 'id > /tmp/x') }}"
SHELL = "; touch /tmp/pwned"
SUBST = "$(touch /tmp/pwned)"
HOSTILE_TEXT = [TEMPLATE, SHELL, SUBST, "a\nb", "ok\n", " ok", "ok ", "ok\r", "ok\x00", "ok\t"]


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def client(store: DictStore) -> testing.TestClient:
    """As test_api.py's: the app, the real storage service, a direct bus."""
    return api_client(store, USERS)


def strict_json(text: str) -> Any:
    """Parse an answer as strict JSON: NaN or Infinity in it would be invalid JSON."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"the answer holds {name}, which is not JSON")
    return json.loads(text, parse_constant=refuse)


def assert_refused(client: testing.TestClient, store: DictStore, path: str, body: Any,
                   field: str) -> None:
    before = dict(store.data)
    result = put(client, path, body if isinstance(body, str) else json.dumps(body))
    assert result.status_code == 400, (path, body, result.text)
    assert strict_json(result.text)["error"]["field"] == field, (path, body, result.text)
    assert store.data == before, "a refused request stored something"


@pytest.mark.parametrize("value", [*HOSTILE_TEXT, "-oProxyCommand=x", "root$", "ROOT", "", 5,
                                   None, "a" * 33, "ro ot"])
def test_remote_user_must_be_a_posix_user_name(client: testing.TestClient, store: DictStore,
                                               value: Any) -> None:
    assert_refused(client, store, "/api/v0/host/10.0.0.1",
                   {"ssh_priv_key": KEY, "remote_user": value}, "remote_user")


@pytest.mark.parametrize("value", ["deploy", "_svc", "ansible-user", "john.doe", "a" * 32])
def test_posix_user_names_are_accepted(client: testing.TestClient, value: str) -> None:
    result = put(client, "/api/v0/host/10.0.0.1", {"ssh_priv_key": KEY, "remote_user": value})
    assert result.status_code == 201, result.text
    assert get(client, "/api/v0/host/10.0.0.1/creds").json["remote_user"] == value


@pytest.mark.parametrize(("body", "field"), [
    ({"ssh_priv_key": KEY, "cluster": "prod\n"}, "cluster"),
    ({"ssh_priv_key": KEY, "cluster": TEMPLATE}, "cluster"),
    ({"ssh_priv_key": KEY, "ssh_port": 0}, "ssh_port"),
    ({"ssh_priv_key": KEY, "ssh_port": 65536}, "ssh_port"),
    ({"ssh_priv_key": KEY, "ssh_port": 10**30}, "ssh_port"),
    ({"ssh_priv_key": KEY, "ssh_port": 22.5}, "ssh_port"),
    ({"ssh_priv_key": KEY, "ssh_port": True}, "ssh_port"),
    ({"ssh_priv_key": KEY, "ssh_port": "22"}, "ssh_port"),
    ({"ssh_priv_key": KEY, "source": SHELL}, "source"),
    ({"ssh_priv_key": KEY + "\n"}, "ssh_priv_key"),
    ({"ssh_priv_key": "A" * 30000}, "ssh_priv_key"),
    ({"ssh_priv_key": KEY, "host": "10.0.0.2"}, "host"),
    ({"ssh_priv_key": KEY, "host": TEMPLATE}, "host"),
    ({"ssh_priv_key": KEY, "surprise": 1}, "surprise"),
])
def test_host_fields(client: testing.TestClient, store: DictStore, body: Any,
                     field: str) -> None:
    assert_refused(client, store, "/api/v0/host/10.0.0.1", body, field)


@pytest.mark.parametrize("address", [
    "fe80::1%eth0", "fe80::1%25eth0", "10.0.0.1%0A", "10.0.0.1%0A%0A", "prod%0A",
    "%7B%7Bx%7D%7D", "10.0.0.300", "-host", "a..b", "1host", "a" * 254,
])
def test_addresses_are_matched_in_full_and_have_no_zone(client: testing.TestClient,
                                                        store: DictStore, address: str) -> None:
    assert_refused(client, store, f"/api/v0/host/{address}", {"ssh_priv_key": KEY}, "address")
    result = get(client, f"/api/v0/host/{address}")
    assert result.status_code == 400 and result.json["error"]["field"] == "address"


@pytest.mark.parametrize(("address", "stored"), [
    ("fe80::1", "fe80::1"), ("2001:DB8::1", "2001:db8::1"), ("Host-1.Example.COM.",
                                                             "host-1.example.com"),
    ("127.0.0.1", "127.0.0.1"),
])
def test_good_addresses_are_stored_canonical(client: testing.TestClient, address: str,
                                             stored: str) -> None:
    result = put(client, f"/api/v0/host/{address}", {"ssh_priv_key": KEY})
    assert result.status_code == 201 and result.json["address"] == stored


def test_self_registration_checks_the_body_address(client: testing.TestClient,
                                                   store: DictStore) -> None:
    for address in ("fe80::1%eth0", "10.0.0.1\n", TEMPLATE):
        assert_refused(client, store, "/api/v0/host", {"ssh_priv_key": KEY, "address": address},
                       "address")


def test_names_are_matched_in_full(client: testing.TestClient, store: DictStore) -> None:
    assert_refused(client, store, "/api/v0/cluster/prod%0A", {}, "name")
    assert_refused(client, store, "/api/v0/network/prod%0A", {}, "name")
    assert_refused(client, store, "/api/v0/cluster/prod", {"network": "default\n"}, "network")
    assert_refused(client, store, "/api/v0/cluster/prod", {"container_manager": SUBST},
                   "container_manager")
    assert get(client, "/api/v0/hosts", params={"cluster": "prod\n"}).json["error"][
        "field"] == "cluster"
    assert get(client, "/api/v0/cluster/prod%0A").status_code == 400


@pytest.mark.parametrize("value", [
    "7.1; touch /tmp/pwned", "$(id)", TEMPLATE, "7.1\n", "-rf", "7.1 && id", "`id`",
    "a" * 129, "", "7.1|id", "7.1>x", 7.1,
])
def test_deploy_version_is_a_strict_pattern(client: testing.TestClient, store: DictStore,
                                            value: Any) -> None:
    put(client, "/api/v0/cluster/c1", {})
    assert_refused(client, store, "/api/v0/cluster/c1/deploy", {"version": value}, "version")


@pytest.mark.parametrize("value", ["7.2.1", "39.20240101.0", "a" * 64,
                                   "1:2.3-4.el9", "v1.2+build~rc1"])
def test_deploy_versions_that_are_versions_are_accepted(client: testing.TestClient,
                                                        value: str) -> None:
    put(client, "/api/v0/cluster/c1", {})
    result = put(client, "/api/v0/cluster/c1/deploy", {"version": value})
    assert result.status_code == 201 and result.json["version"] == value


@pytest.mark.parametrize(("body", "field"), [
    ({"max_unavailable": "lots"}, "max_unavailable"),
    ({"max_unavailable": 0}, "max_unavailable"),
    ({"max_unavailable": "101%"}, "max_unavailable"),
    ({"max_unavailable": "50%\n"}, "max_unavailable"),
    ({"max_unavailable": 10**30}, "max_unavailable"),
    ({"failure_tolerance": -1}, "failure_tolerance"),
    ({"drain_timeout": 10**9}, "drain_timeout"),
    ({"drain": "yes"}, "drain"),
    ({"extra": TEMPLATE}, "extra"),
])
def test_operation_options_are_typed_and_bounded(client: testing.TestClient, store: DictStore,
                                                 body: Any, field: str) -> None:
    put(client, "/api/v0/cluster/c1", {})
    assert_refused(client, store, "/api/v0/cluster/c1/restart", body, field)


URL_ATTACKS = [TEMPLATE, "http://127.0.0.1:2379\nFLANNEL_OPTIONS=x", "ftp://h", "file:///etc/x",
               "http://u:p@h:2379", "http://h:0", "http://h:65536", "http://h:2379/?q=1",
               "http://h:2379/#x", "http:// h", "http://h%0a", "http://[fe80::1%25eth0]:2379",
               "http://h:2379/$(id)", "HTTP://h"]


@pytest.mark.parametrize("url", URL_ATTACKS)
def test_network_etcd_url_is_parsed(client: testing.TestClient, store: DictStore,
                                    url: str) -> None:
    assert_refused(client, store, "/api/v0/network/n1", {"options": {"etcd_server_url": url}},
                   "options.etcd_server_url")


@pytest.mark.parametrize("key", ["/atomic.io/network\nFLANNEL_OPTIONS=--x", "/a/../b", "a/b",
                                 "/a//b", "/a/./b", TEMPLATE, "/a b", "/" + "a" * 300, ""])
def test_flannel_key_is_a_path_pattern(client: testing.TestClient, store: DictStore,
                                       key: str) -> None:
    assert_refused(client, store, "/api/v0/network/n1", {"options": {"flannel_key": key}},
                   "options.flannel_key")


@pytest.mark.parametrize("address", ["fe80::1%eth0:8080", "127.0.0.1", "127.0.0.1:0",
                                     "127.0.0.1:8080\n", "::1:8080", TEMPLATE, "h:8080;id"])
def test_flannel_server_address_is_host_port(client: testing.TestClient, store: DictStore,
                                             address: str) -> None:
    assert_refused(client, store, "/api/v0/network/n1",
                   {"type": "flannel_server", "options": {"address": address}}, "options.address")


def test_network_options_are_known_per_type(client: testing.TestClient, store: DictStore) -> None:
    assert_refused(client, store, "/api/v0/network/n1", {"options": {"address": "h:1"}},
                   "options.address")
    assert_refused(client, store, "/api/v0/network/n1",
                   {"type": "flannel_server", "options": {"address": "h:1", "flannel_key": "/a"}},
                   "options.flannel_key")
    ok = put(client, "/api/v0/network/n1", {"type": "flannel_server",
                                            "options": {"address": "[fd00::1]:8080"}})
    assert ok.status_code == 201
    etcd = put(client, "/api/v0/network/n2", {"options": {
        "etcd_server_url": "https://10.0.0.1:2379,https://etcd.example:2379/",
        "flannel_key": "/atomic.io/network"}})
    assert etcd.status_code == 201


@pytest.mark.parametrize(("options", "field"), [
    *[({"server_url": url}, "options.server_url") for url in URL_ATTACKS],
    ({"server_url": "https://k:6443", "token": "t0k\nen"}, "options.token"),
    ({"server_url": "https://k:6443", "token": TEMPLATE}, "options.token"),
    ({"server_url": "https://k:6443", "token": "******"}, "options.token"),
    ({"server_url": "https://k:6443", "token": 5}, "options.token"),
    ({"server_url": "https://k:6443", "client_key": "/k.pem"}, "options.client_certificate"),
    ({"server_url": "https://k:6443", "client_certificate": "../c.pem"},
     "options.client_certificate"),
    ({"server_url": "https://k:6443", "certificate_authority": TEMPLATE},
     "options.certificate_authority"),
    ({"server_url": "https://k:6443", "request_timeout": 0}, "options.request_timeout"),
    ({"server_url": "https://k:6443", "request_timeout": 10**9}, "options.request_timeout"),
    ({"server_url": "https://k:6443", "insecure_skip_verify": "yes"},
     "options.insecure_skip_verify"),
    ({"server_url": "https://k:6443", "kubeconfig": "/x"}, "options.kubeconfig"),
    ({}, "options.server_url"),
])
def test_container_manager_options_are_typed(client: testing.TestClient, store: DictStore,
                                             options: Any, field: str) -> None:
    assert_refused(client, store, "/api/v0/containermanager/k",
                   {"type": "kubernetes", "options": options}, field)


def test_container_manager_good_options(client: testing.TestClient) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    body = {"type": "kubernetes", "options": {
        "server_url": "https://[fd00::1]:6443/prefix", "token": "eyJhbGciOi.x-y_z~+/==",
        "certificate_authority": pem, "request_timeout": 2.5,
        "client_certificate": "/etc/pki/c.pem", "client_key": "/etc/pki/c.key"}}
    assert put(client, "/api/v0/containermanager/k", body).status_code == 201
    # trivial calls nothing, but its options are still typed.
    assert put(client, "/api/v0/containermanager/t", {"type": "trivial", "options": {"x": 1}}
               ).json["error"]["field"] == "options.x"
    assert put(client, "/api/v0/containermanager/t", {"type": "trivial", "options": {
        "server_url": "https://127.0.0.1:6443\n"}}).json["error"]["field"] == "options.server_url"


@pytest.mark.parametrize(("raw", "field"), [
    *[(f'{{"ssh_priv_key": "{KEY}", "ssh_port": {number}}}', "ssh_port")
      for number in ("NaN", "Infinity", "-Infinity", "1e400")],
    (f'{{"ssh_priv_key": "{KEY}", "cluster": NaN}}', "cluster"),
])
def test_non_finite_numbers_are_refused_and_never_echoed(client: testing.TestClient,
                                                         store: DictStore, raw: str,
                                                         field: str) -> None:
    assert_refused(client, store, "/api/v0/host/10.0.0.1", raw, field)
    result = put(client, "/api/v0/cluster/c1/restart", '{"max_unavailable": NaN}')
    assert result.status_code == 400 and "NaN" not in json.dumps(strict_json(result.text)["error"]
                                                                   .get("field", ""))


def test_integral_floats_are_integers(client: testing.TestClient) -> None:
    result = put(client, "/api/v0/host/10.0.0.1",
                 f'{{"ssh_priv_key": "{KEY}", "ssh_port": 2222.0}}')
    assert result.status_code == 201 and result.text.count('"ssh_port": 2222,') == 1


@pytest.mark.parametrize("depth", [33, 900, 5000, 100000])
def test_deep_nesting_is_a_400(client: testing.TestClient, store: DictStore, depth: int) -> None:
    before = dict(store.data)
    for path, raw in [
        ("/api/v0/network/deep", '{"options": {"x": ' + "[" * depth + "]" * depth + "}}"),
        ("/api/v0/cluster/deep", "[" * depth + "]" * depth),
        ("/api/v0/host/10.0.0.1", '{"ssh_priv_key": ' + "[" * depth + "]" * depth + "}"),
    ]:
        result = put(client, path, raw)
        assert result.status_code == 400, (path, depth, result.text[:200])
        assert "32" in result.json["error"]["description"] or result.json["error"].get("field")
    assert store.data == before


def test_nesting_within_the_limit_reaches_validation(client: testing.TestClient) -> None:
    raw = '{"options": {"x": ' + "[" * 29 + "]" * 29 + "}}"
    result = put(client, "/api/v0/network/n1", raw)
    assert result.status_code == 400 and result.json["error"]["field"] == "options.x"


@pytest.mark.parametrize("body", ["null", "[]", '"text"', "5", "true"])
def test_bodies_are_objects(client: testing.TestClient, store: DictStore, body: str) -> None:
    for path in ("/api/v0/cluster/c9", "/api/v0/network/n9", "/api/v0/host/10.0.0.9",
                 "/api/v0/host", "/api/v0/cluster/c9/hosts"):
        before = dict(store.data)
        result = put(client, path, body)
        assert result.status_code == 400, (path, body, result.text)
        assert store.data == before


@pytest.mark.parametrize(("query", "field"), [
    ({"offset": "²"}, "offset"), ({"limit": "٣"}, "limit"), ({"limit": "1.0"}, "limit"),
    ({"limit": "+1"}, "limit"), ({"limit": " 1"}, "limit"), ({"limit": "0"}, "limit"),
    ({"limit": "99999999999999999999"}, "limit"), ({"offset": "-1"}, "offset"),
    ({"offset": "1e3"}, "offset"), ({"offset": "10000000000"}, "offset"),
    ({"limit": ["1", "2"]}, "limit"), ({"bogus": "1"}, "bogus"),
    ({"status": "active\n"}, "status"), ({"cluster": ""}, "cluster"),
])
def test_query_parameters_are_parsed_strictly(client: testing.TestClient, query: Any,
                                              field: str) -> None:
    result = get(client, "/api/v0/hosts", params=query)
    assert result.status_code == 400, (query, result.text)
    assert result.json["error"]["field"] == field


def test_operations_without_query_parameters_refuse_them(client: testing.TestClient) -> None:
    for path in ("/api/v0/clusters", "/api/v0/status", "/api/v0/cluster/c1"):
        result = get(client, path, params={"x": "1"})
        assert result.status_code == 400 and result.json["error"]["field"] == "x", path


def test_self_registration_path_serves_only_put(client: testing.TestClient) -> None:
    for method in ("GET", "DELETE", "POST", "PATCH"):
        result = client.simulate_request(method, "/api/v0/host", headers=AUTH)
        assert result.status_code == 405, (method, result.text)
        assert set(result.headers["Allow"].replace(" ", "").split(",")) - {"OPTIONS"} == {"PUT"}
        assert result.json["error"]["code"] == 405
        assert result.json["error"]["description"] == (
            f"{method} is not served on /api/v0/host; it serves: {result.headers['Allow']}")
    options = client.simulate_options("/api/v0/host", headers=AUTH)
    assert set(options.headers["Allow"].replace(" ", "").split(",")) - {"OPTIONS"} == {"PUT"}


def test_unknown_storage_source_is_a_conflict(client: testing.TestClient, store: DictStore
                                              ) -> None:
    before = dict(store.data)
    result = put(client, "/api/v0/host/10.0.0.1", {"ssh_priv_key": KEY, "source": "nosuch"})
    assert result.status_code == 409 and result.json["error"]["field"] == "source"
    assert store.data == before


def test_errors_never_hold_non_finite_numbers() -> None:
    # The parser itself: a NaN never gets into a value the server could answer with.
    from commissaire import validation
    for raw in ('{"a": NaN}', '{"a": [1, {"b": Infinity}]}', '{"a": 1e999}'):
        with pytest.raises(Exception) as caught:
            validation.loads(raw)
        assert getattr(caught.value, "field", None) in ("a", "a.1.b")
    assert not any(isinstance(v, float) and not math.isfinite(v)
                   for v in validation.loads('{"a": 1.5, "b": -0.0}').values())


@pytest.mark.parametrize("changes", [{"cluster": "prod\n"}, {"remote_user": "root\n"},
                                     {"address_source": "10.0.0.1\n"},
                                     {"endpoints": ["https://c.example:8000\n"]}])
def test_commctl_user_data_matches_in_full(changes: dict[str, Any]) -> None:
    from commctl.exitstatus import CommctlError
    from commctl.userdata import Registration

    registration = Registration(**{"endpoints": ["https://c.example:8000"],
                                   "ssh_priv_key": b"key\n", **changes})
    with pytest.raises(CommctlError):
        registration.check()


def test_repeated_keys_are_refused(client: testing.TestClient, store: DictStore) -> None:
    # With the last key winning, a proxy that checks the first would see another body.
    assert_refused(client, store, "/api/v0/cluster/c1",
                   '{"network": "default", "network": "other"}', "network")
    assert_refused(client, store, "/api/v0/network/n1",
                   '{"options": {"flannel_key": "/a", "flannel_key": "/b"}}', "flannel_key")


@pytest.mark.parametrize("body", ["\x0c", " ", "\n", "\x00"])
def test_a_blank_body_is_not_an_empty_one(client: testing.TestClient, store: DictStore,
                                          body: str) -> None:
    put(client, "/api/v0/cluster/c1", {})
    before = dict(store.data)
    result = put(client, "/api/v0/cluster/c1/restart", body)
    assert result.status_code == 400 and result.json["error"]["title"] == "Malformed JSON"
    assert store.data == before
