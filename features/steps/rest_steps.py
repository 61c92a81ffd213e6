"""Steps that drive the REST API only, as a client would."""
from __future__ import annotations

import base64
import concurrent.futures
import json
from typing import Any

import requests
from behave import given, then, when

# Any syntactically valid base64 works for CRUD: nothing listens on these addresses.
KEY = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nbehave\n"
                       b"-----END OPENSSH PRIVATE KEY-----\n").decode()


def _url(context: Any, path: str) -> str:
    return context.base + path


def _body(context: Any) -> Any:
    if not context.text:
        return None
    return json.loads(context.text.replace("$KEY", KEY))


def _send(context: Any, method: str, path: str, body: Any = None) -> requests.Response:
    data = None if body is None else json.dumps(body)
    context.response = requests.request(method, _url(context, path), data=data,
                                        auth=context.auth, timeout=30)
    return context.response


@given("we are anonymous")
def anonymous(context: Any) -> None:
    context.auth = None


@given('we use the password "{password}"')
def wrong_password(context: Any, password: str) -> None:
    context.auth = (context.stack.auth[0], password)


@given('a network "{name}" exists')
def network_exists(context: Any, name: str) -> None:
    body = {"type": "flannel_server", "options": {"address": "127.0.0.1:8080"}}
    assert _send(context, "PUT", f"/network/{name}", body).status_code == 201


@given('a container manager "{name}" of type "{kind}" exists')
def cm_exists(context: Any, name: str, kind: str) -> None:
    body = {"type": kind, "options": {"server_url": "https://127.0.0.1:6443"}}
    response = _send(context, "PUT", f"/containermanager/{name}", body)
    assert response.status_code == 201, response.text


@given('a cluster "{name}" exists')
def cluster_exists(context: Any, name: str) -> None:
    assert _send(context, "PUT", f"/cluster/{name}", {}).status_code == 201


@given('a host "{address}" exists')
def host_exists(context: Any, address: str) -> None:
    response = _send(context, "PUT", f"/host/{address}", {"ssh_priv_key": KEY})
    assert response.status_code == 201, response.text


@given('a host "{address}" exists in cluster "{cluster}"')
def host_exists_in(context: Any, address: str, cluster: str) -> None:
    response = _send(context, "PUT", f"/host/{address}", {"ssh_priv_key": KEY,
                                                          "cluster": cluster})
    assert response.status_code == 201, response.text


@when('we {method:w} "{path}" with')
def send_with_body(context: Any, method: str, path: str) -> None:
    _send(context, method.upper(), path, _body(context))


@when('we {method:w} "{path}" with the raw body')
def send_raw(context: Any, method: str, path: str) -> None:
    context.response = requests.request(method.upper(), _url(context, path), data=context.text,
                                        auth=context.auth, timeout=30)


@when('we {method:w} "{path}"')
def send(context: Any, method: str, path: str) -> None:
    _send(context, method.upper(), path)


@when('two clients PUT "{path}" at once with')
def two_writers(context: Any, path: str) -> None:
    body = _body(context)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(requests.put, _url(context, path), data=json.dumps(body),
                               auth=context.auth, timeout=30) for _ in range(2)]
        context.responses = [f.result() for f in futures]


@then("the status code is {code:d}")
def status_is(context: Any, code: int) -> None:
    response = context.response
    assert response.status_code == code, \
        f"expected {code}, got {response.status_code}: {response.text}"


@then("the statuses are {first:d} and {second:d} in some order")
def statuses_are(context: Any, first: int, second: int) -> None:
    got = sorted(r.status_code for r in context.responses)
    assert got == sorted([first, second]), [(r.status_code, r.text) for r in context.responses]


@then("the response is")
def response_is(context: Any) -> None:
    assert context.response.json() == _body(context), context.response.text


@then("the response contains")
def response_contains(context: Any) -> None:
    got = context.response.json()
    for key, value in _body(context).items():
        assert got.get(key) == value, f"{key}: expected {value!r}, got {got.get(key)!r}"


@then('the response lists "{items}"')
def response_lists(context: Any, items: str) -> None:
    wanted = [i.strip() for i in items.split(",") if i.strip()]
    got = context.response.json()
    names = [g["address"] if isinstance(g, dict) else g for g in got]
    assert sorted(names) == sorted(wanted), f"expected {wanted}, got {names}"


@then("the response is an empty list")
def response_empty(context: Any) -> None:
    assert context.response.json() == [], context.response.text


@then('the error says "{text}"')
def error_says(context: Any, text: str) -> None:
    error = context.response.json()["error"]
    assert error["code"] == context.response.status_code
    assert text in error["description"], error


@then('the error names the field "{field}"')
def error_field(context: Any, field: str) -> None:
    error = context.response.json()["error"]
    assert error.get("field") == field, error


@then('the response has no field "{field}"')
def no_field(context: Any, field: str) -> None:
    assert field not in context.response.json(), context.response.text


def _field(context: Any, field: str) -> Any:
    """A field of the JSON response; dots walk into nested objects ("host.status")."""
    got = context.response.json()
    for part in field.split("."):
        got = got[part]
    return got


@then('the response field "{field}" is "{value}"')
def field_is(context: Any, field: str, value: str) -> None:
    got = _field(context, field)
    assert str(got) == value, f"{field}: expected {value!r}, got {got!r}"


@then('the response field "{field}" is empty')
def field_empty(context: Any, field: str) -> None:
    got = _field(context, field)
    assert not got, f"{field}: {got!r}"


@then('the response field "{field}" contains "{text}"')
def field_contains(context: Any, field: str, text: str) -> None:
    got = _field(context, field)
    assert text in str(got), f"{field}: {text!r} not in {got!r}"


@then("the response shows the secret key")
def shows_key(context: Any) -> None:
    assert context.response.json()["ssh_priv_key"] == KEY
