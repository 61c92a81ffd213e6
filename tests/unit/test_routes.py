"""Routes are data (commissaire_http.app.routes): for every route, the methods its
record lists are exactly the responders its resource has, the methods the
OpenAPI document shows, and the methods the app serves; any other is a 405."""
from __future__ import annotations

import bcrypt
import falcon.testing
import pytest

from commissaire.config import ServerConfig
from commissaire_http.app import routes
from tests.unit.fakes import DictStore, api_client

METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


def table() -> list[dict]:
    return routes(bus=None, config=ServerConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize("route", table(), ids=lambda r: r["path"])
def test_listed_methods_are_the_responders_and_the_document(route: dict) -> None:
    listed = set(route["methods"])
    responders = {m for m in METHODS if hasattr(route["resource"], f"on_{m.lower()}")}
    assert responders == listed, route["path"]
    document = table()[-1]["resource"].document
    assert {m.upper() for m in document["paths"][route["path"]]} == listed


def test_the_app_refuses_every_method_a_route_does_not_list(client: falcon.testing.TestClient
                                                            ) -> None:
    for route in table():
        path = route["path"].replace("{address}", "127.0.9.1").replace("{name}", "c9")
        for method in set(METHODS) - set(route["methods"]):
            answer = client.simulate_request(method, path, headers={
                "Authorization": "Basic YTph", "Content-Type": "application/json"}, body="{}")
            assert answer.status_code == 405, (method, path, answer.status_code, answer.text)
            assert set(answer.headers["allow"].replace(" ", "").split(",")) >= set(route["methods"])


@pytest.fixture
def client() -> falcon.testing.TestClient:
    users = {"a": {"hash": bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()}}
    return api_client(DictStore(), users)  # type: ignore[no-any-return]
