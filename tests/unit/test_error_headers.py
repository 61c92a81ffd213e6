"""Headers an error's HTTP answer carries are declared on its class, once: every
401 challenges, every 503 says when to retry, a 429 says after how long."""
from __future__ import annotations

import falcon
import falcon.testing
import pytest

from commissaire import errors
from commissaire_http.app import _handle_commissaire_error


def answer(exc: errors.CommissaireError) -> falcon.testing.Result:
    class Raises:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise exc

    app = falcon.App()
    app.add_route("/x", Raises())
    app.add_error_handler(errors.CommissaireError, _handle_commissaire_error)
    return falcon.testing.TestClient(app).simulate_get("/x")


@pytest.mark.parametrize(("exc", "status", "headers"), [
    (errors.AuthenticationRequired("who are you"), 401,
     {"www-authenticate": 'Basic realm="commissaire"'}),
    (errors.StoreUnavailable("etcd is down"), 503, {"retry-after": "5"}),
    (errors.SecretsUnavailable("no key"), 503, {"retry-after": "5"}),
    (errors.BusUnavailable("redis is down"), 503, {"retry-after": "5"}),
    (errors.TooManyRequests("slow down", retry_after=7), 429, {"retry-after": "7"}),
])
def test_the_class_declares_the_headers(exc: errors.CommissaireError, status: int,
                                        headers: dict[str, str]) -> None:
    result = answer(exc)
    assert result.status_code == status
    assert {k: result.headers.get(k) for k in headers} == headers
    assert result.json["error"]["description"] == exc.description


@pytest.mark.parametrize("exc", [errors.NotFound("no"), errors.Conflict("clock"),
                                 errors.ValidationError("bad", field="name")])
def test_other_errors_carry_neither(exc: errors.CommissaireError) -> None:
    result = answer(exc)
    assert "www-authenticate" not in result.headers and "retry-after" not in result.headers


def test_a_raised_401_is_a_challenge_wherever_it_comes_from() -> None:
    # raised by a plugin or a resource, not only by the middleware's refusal
    assert errors.AuthenticationRequired().response_headers() == {
        "WWW-Authenticate": 'Basic realm="commissaire"'}
