"""Authentication: exact self-auth paths, no user-name timing oracle, throttled failures."""
from __future__ import annotations

import base64
import json
import statistics
import time
from pathlib import Path

import bcrypt
import falcon
import pytest
from falcon import testing

from commissaire import errors
from commissaire_http.app import _handle_commissaire_error
from commissaire_http.authentication import build_auth_middleware
from commissaire_http.authentication.httpbasicauth import HTTPBasicAuth
from commissaire_http.authentication.throttle import FailureThrottle

BASIC = "commissaire_http.authentication.httpbasicauth"


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        resp.media = {"hello": True}

    on_put = on_delete = on_get


def client(plugins: list[dict], self_auths: list[str] | None = None,
           trusted_proxies: list[str] | None = None, limit: int = 10) -> testing.TestClient:
    app = falcon.App(middleware=[build_auth_middleware(plugins, self_auths or [],
                                                       trusted_proxies, limit, 60.0)])
    app.req_options.strip_url_path_trailing_slash = True
    for path in ("/api/v0/x", "/api/v0/host", "/api/v0/host/{address}",
                 "/api/v0/host/{address}/creds", "/api/v0/hostile"):
        app.add_route(path, Hello())
    app.add_error_handler(errors.CommissaireError, _handle_commissaire_error)
    return testing.TestClient(app)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"a": {"hash": bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()}}))
    return path


# -- item 6: self-auth paths match exactly ---------------------------------------------

def test_a_self_auth_path_opens_exactly_that_path_not_the_ones_below_it() -> None:
    c = client([], self_auths=["/api/v0/host"])
    assert c.simulate_put("/api/v0/host").status_code == 200
    assert c.simulate_put("/api/v0/host/").status_code == 200  # a trailing slash aside
    assert c.simulate_get("/api/v0/host/10.0.0.1/creds").status_code == 401
    assert c.simulate_delete("/api/v0/host/10.0.0.1").status_code == 401
    assert c.simulate_get("/api/v0/hostile").status_code == 401


def test_a_self_auth_path_given_with_a_trailing_slash_is_the_same_path() -> None:
    c = client([], self_auths=["/api/v0/host/"])
    assert c.simulate_put("/api/v0/host").status_code == 200
    assert c.simulate_get("/api/v0/host/10.0.0.1/creds").status_code == 401


# -- item 10: unknown users cost what known ones cost ----------------------------------

def _median_seconds(auth: HTTPBasicAuth, user: str, password: str, rounds: int = 7) -> float:
    req = testing.create_req(headers=basic(user, password))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        assert auth.authenticate(req) is False
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_an_unknown_user_costs_what_a_known_user_with_a_wrong_password_costs(
        tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"known": {"hash": bcrypt.hashpw(b"right", bcrypt.gensalt(10))
                                          .decode()}}))
    auth = HTTPBasicAuth(filepath=str(path))
    known = _median_seconds(auth, "known", "wrong")
    unknown = _median_seconds(auth, "nobody", "wrong")
    # Without the dummy check an unknown user answers ~1000x faster.
    assert unknown >= 0.5 * known, (unknown, known)
    assert unknown <= 3.0 * known, (unknown, known)  # nor much slower: also an oracle


def test_the_cache_answers_fast_only_for_the_password_that_was_verified(
        tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"known": {"hash": bcrypt.hashpw(b"right", bcrypt.gensalt(10))
                                          .decode()}}))
    auth = HTTPBasicAuth(filepath=str(path))
    assert auth.authenticate(testing.create_req(headers=basic("known", "right"))) is True
    # A wrong password after a cached success still costs a full check.
    slow = _median_seconds(auth, "known", "wrong", rounds=3)
    start = time.perf_counter()
    assert auth.authenticate(testing.create_req(headers=basic("known", "right"))) is True
    assert time.perf_counter() - start < slow / 5


# -- item 10: failures are throttled ------------------------------------------------------

def test_the_eleventh_failure_in_a_minute_is_429_with_retry_after(users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}])
    for _ in range(10):
        result = c.simulate_get("/api/v0/x", headers=basic("a", "wrong"), remote_addr="192.0.2.7")
        assert result.status_code == 401
    result = c.simulate_get("/api/v0/x", headers=basic("a", "wrong"), remote_addr="192.0.2.7")
    assert result.status_code == 429
    assert 1 <= int(result.headers["Retry-After"]) <= 60
    assert result.json["error"]["code"] == 429
    # Even the right password is not checked from the throttled address...
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.7").status_code == 429
    # ...but the real user from elsewhere gets in.
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="198.51.100.1").status_code == 200


def test_unknown_user_names_and_overlong_passwords_count_as_failures(users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}], limit=3)
    assert c.simulate_get("/api/v0/x", headers=basic("nobody", "x"),
                          remote_addr="192.0.2.8").status_code == 401
    assert c.simulate_get("/api/v0/x", headers=basic("a", "x" * 73),
                          remote_addr="192.0.2.8").status_code == 400
    # (H2) Undecodable credentials are a 401 with the challenge, and still a failure.
    assert c.simulate_get("/api/v0/x", headers={"Authorization": "Basic !!!"},
                          remote_addr="192.0.2.8").status_code == 401
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.8").status_code == 429


def test_requests_without_credentials_are_not_failures(users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}], limit=2)
    for _ in range(5):
        assert c.simulate_get("/api/v0/x", remote_addr="192.0.2.9").status_code == 401
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.9").status_code == 200


def test_a_user_attacked_from_many_addresses_is_slowed_but_not_locked_out(
        users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}])
    for i in range(10):  # ten addresses, one guess each: the name is now under attack
        assert c.simulate_get("/api/v0/x", headers=basic("a", "guess"),
                              remote_addr=f"203.0.113.{i}").status_code == 401
    # An address that already failed for the name gets no second guess this minute.
    assert c.simulate_get("/api/v0/x", headers=basic("a", "guess2"),
                          remote_addr="203.0.113.1").status_code == 429
    # A fresh address still gets one check: a wrong guess is refused...
    assert c.simulate_get("/api/v0/x", headers=basic("a", "guess3"),
                          remote_addr="203.0.113.50").status_code == 401
    # ...and the real user, from an address that did not fail, gets in.
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="198.51.100.2").status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy(
        users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}],
               trusted_proxies=["10.0.0.1"], limit=2)
    for _ in range(2):
        c.simulate_get("/api/v0/x", headers={**basic("a", "x"), "X-Forwarded-For": "192.0.2.20"},
                       remote_addr="10.0.0.1")
    assert c.simulate_get("/api/v0/x", headers={**basic("a", "a"),
                                                "X-Forwarded-For": "192.0.2.20"},
                          remote_addr="10.0.0.1").status_code == 429
    assert c.simulate_get("/api/v0/x", headers={**basic("a", "a"),
                                                "X-Forwarded-For": "192.0.2.21"},
                          remote_addr="10.0.0.1").status_code == 200
    # A client talking directly cannot pick its address with the header. (A wrong
    # password: a:a is now verified, and verified credentials pass a throttle.)
    for _ in range(2):
        c.simulate_get("/api/v0/x", headers={**basic("a", "x"), "X-Forwarded-For": "192.0.2.30"},
                       remote_addr="192.0.2.31")
    assert c.simulate_get("/api/v0/x", headers={**basic("a", "y"),
                                                "X-Forwarded-For": "192.0.2.32"},
                          remote_addr="192.0.2.31").status_code == 429


def test_failures_age_out_of_the_window() -> None:
    now = [1000.0]
    throttle = FailureThrottle(limit=2, window=60.0, clock=lambda: now[0])
    throttle.failure("192.0.2.1", ["u"])
    now[0] += 30
    throttle.failure("192.0.2.1", ["u"])
    assert throttle.retry_after("192.0.2.1", ["u"]) == pytest.approx(30.0)
    now[0] += 30.5
    assert throttle.retry_after("192.0.2.1", ["u"]) == 0


def test_ipv6_clients_are_counted_per_64() -> None:
    throttle = FailureThrottle(limit=2)
    throttle.failure("2001:db8:1:2::1")
    throttle.failure("2001:db8:1:2::ffff")
    assert throttle.retry_after("2001:db8:1:2:abcd::9", []) > 0
    assert throttle.retry_after("2001:db8:1:3::1", []) == 0


def test_a_success_does_not_reset_the_address_counter(users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}], limit=3)
    for _ in range(2):
        c.simulate_get("/api/v0/x", headers=basic("victim", "x"), remote_addr="192.0.2.40")
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.40").status_code == 200
    c.simulate_get("/api/v0/x", headers=basic("victim", "y"), remote_addr="192.0.2.40")
    # The address is throttled for anything that needs a bcrypt check...
    assert c.simulate_get("/api/v0/x", headers=basic("a", "guess"),
                          remote_addr="192.0.2.40").status_code == 429
    assert c.simulate_get("/api/v0/x", headers=basic("victim", "z"),
                          remote_addr="192.0.2.40").status_code == 429


# -- F7: a bad neighbour does not lock out credentials verified before -------------------

def test_credentials_verified_before_pass_a_throttled_address_guesses_do_not(
        users_file: Path) -> None:
    c = client([{"name": BASIC, "filepath": str(users_file)}], limit=3)
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.60").status_code == 200
    for _ in range(3):  # a bad client at the same address (schemathesis' own probes)
        c.simulate_get("/api/v0/x", headers=basic("a", "nope"), remote_addr="192.0.2.60")
    for _ in range(3):
        c.simulate_get("/api/v0/x", headers=basic("ghost", "nope"), remote_addr="192.0.2.60")
    # The exact credentials verified before are a cache hit: admitted, address and user
    # throttled or not.
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.60").status_code == 200
    # Anything that would need a bcrypt check is still 429, the right password
    # included for a user whose cache entry is not there.
    for creds in (basic("a", "b"), basic("ghost", "nope"), basic("a", "a ")):
        result = c.simulate_get("/api/v0/x", headers=creds, remote_addr="192.0.2.60")
        assert result.status_code == 429
        assert int(result.headers["Retry-After"]) >= 1


def test_a_cache_hit_is_not_a_prefix_or_case_variant_of_the_password(users_file: Path) -> None:
    auth = HTTPBasicAuth(filepath=str(users_file))
    assert auth.authenticate(testing.create_req(headers=basic("a", "a"))) is True
    assert auth.verified(testing.create_req(headers=basic("a", "a"))) is True
    for user, password in (("a", "A"), ("a", ""), ("a", "a\n"), ("A", "a"), ("b", "a")):
        assert auth.verified(testing.create_req(headers=basic(user, password))) is False
    assert auth.verified(testing.create_req(headers={"Authorization": "Basic !!!"})) is False


# -- F5: uncached bcrypt checks are bounded process-wide ---------------------------------

def test_a_check_without_a_free_slot_is_429_retry_after_1_and_no_failure(
        users_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from commissaire_http.authentication import httpbasicauth
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(httpbasicauth, "_SLOTS", slots)
    monkeypatch.setattr(httpbasicauth, "SLOT_WAIT", 0.05)
    c = client([{"name": BASIC, "filepath": str(users_file)}], limit=2)
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                          remote_addr="192.0.2.70").status_code == 200
    slots.acquire()  # every slot busy (another request's bcrypt)
    try:
        start = time.perf_counter()
        for creds in (basic("a", "wrong"), basic("nobody", "x"), basic("a", "wrong")):
            result = c.simulate_get("/api/v0/x", headers=creds, remote_addr="192.0.2.71")
            assert result.status_code == 429
            assert result.headers["Retry-After"] == "1"
        # A cache hit never waits for a slot.
        start = time.perf_counter()
        assert c.simulate_get("/api/v0/x", headers=basic("a", "a"),
                              remote_addr="192.0.2.70").status_code == 200
        assert time.perf_counter() - start < 0.05
    finally:
        slots.release()
    # Busy answers were not failures: with limit 2 the address still gets its checks.
    assert c.simulate_get("/api/v0/x", headers=basic("a", "wrong"),
                          remote_addr="192.0.2.71").status_code == 401
    assert c.simulate_get("/api/v0/x", headers=basic("a", "a "),
                          remote_addr="192.0.2.71").status_code == 401


# -- F8: self-auth paths match exactly, one trailing slash aside --------------------------

@pytest.mark.parametrize("path", ["/api/v0/host//", "/api/v0//host", "/api/v0/host/x",
                                  "/API/v0/host", "/api/v0/host///"])
def test_only_the_self_auth_path_itself_skips_authentication(path: str) -> None:
    c = client([], self_auths=["/api/v0/host"])
    for method in ("GET", "DELETE", "PUT"):
        assert c.simulate_request(method, path).status_code == 401, (method, path)
