"""The allow-list patterns: full matches, the same in Python and in the document.

`commissaire.validation` writes each pattern once; Python matches it in full and
the OpenAPI document carries it as `^(?:...)$`, which ECMA (schemathesis, any
JSON Schema client) also reads as a full match. These tests pin that the two
readings agree and that what a pattern admits the code can use.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commissaire import validation
from commissaire.errors import ValidationError
from commissaire.models import (
    ADDRESS_SCHEMA,
    NAME_SCHEMA,
    Cluster,
    ClusterDeploy,
    ContainerManagerConfig,
    Host,
    Network,
)
from commissaire_http.resources.openapi import build_document


@settings(max_examples=400, deadline=None)
@given(st.from_regex(re.compile(validation.IPV6), fullmatch=True))
def test_every_ipv6_the_pattern_admits_parses(text: str) -> None:
    assert ipaddress.IPv6Address(text).scope_id is None


@settings(max_examples=400, deadline=None)
@given(st.ip_addresses())
def test_every_ip_address_is_admitted_in_its_usual_forms(address: Any) -> None:
    forms = {str(address), address.exploded}
    for text in forms:
        assert validation.validate_address(text) == str(address)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(re.compile(validation.URL), fullmatch=True))
def test_urls_the_pattern_admits_have_no_user_query_or_space(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname
    assert not (parts.username or parts.password or parts.query or parts.fragment)
    assert not any(c.isspace() for c in url)
    assert parts.port is None or 0 < parts.port < 65536


@pytest.mark.parametrize(("pattern", "good", "bad"), [
    (validation.NAME, ["prod", "a.b-c_d", "0"], ["prod\n", "\nprod", "-x", ".x", "a" * 64, ""]),
    (validation.USER_NAME, ["root", "_x", "john.doe"], ["root\n", "Root", "-x", "r$", ""]),
    (validation.VERSION, ["7.1", "1:2.3-4.el9"], ["7.1\n", "7.1;id", "$(id)", "-x", ""]),
    (validation.ABS_PATH, ["/atomic.io/network"], ["/a\n", "/a/../b", "/./a", "a", "/a/"]),
    (validation.HOST_PORT, ["h:1", "[::1]:8080", "10.0.0.1:65535"],
     ["h:0", "h:65536", "::1:80", "h:80\n", "[fe80::1%eth0]:80"]),
])
def test_patterns_match_in_full(pattern: str, good: list[str], bad: list[str]) -> None:
    schema = validation.string(pattern)
    for value in good:
        assert validation.full_match(pattern, value), value
        validation.check_schema(schema, value)
    for value in bad:
        assert not validation.full_match(pattern, value), value
        with pytest.raises(ValidationError):
            validation.check_schema(schema, value)


def test_anchored_patterns_ignore_pythons_trailing_newline_rule() -> None:
    # Python's re.search("^a$", "a\n") matches; the schema check must not.
    assert re.search(validation.anchored("a"), "a\n")
    with pytest.raises(ValidationError):
        validation.check_schema({"type": "string", "pattern": validation.anchored("a")}, "a\n")


def test_no_pattern_uses_unicode_wide_classes() -> None:
    # \d, \w and \s mean more in Python than in ECMA: "²" is a \d to Python.
    for name in ("NAME", "IPV4", "IPV6", "ADDRESS", "URL", "HOST_PORT", "USER_NAME", "VERSION",
                 "ABS_PATH", "TOKEN", "PEM_BUNDLE", "BASE64", "PERCENT", "STORE_SOURCE", "PORT"):
        pattern = getattr(validation, name)
        assert not re.search(r"\\[dwsDWS]", pattern), name
        assert "(?=" not in pattern and "(?!" not in pattern and "(?<" not in pattern, name


def test_the_document_shows_the_schemas_the_server_validates_with() -> None:
    from commissaire.config import ServerConfig
    from commissaire_http.app import routes

    table = routes(bus=None, config=ServerConfig())  # type: ignore[arg-type]
    doc = table[-1]["resource"].document  # what GET /api/v0/openapi.json answers
    assert doc == build_document(table, ["/api/v0/openapi.json"])
    put = {path: item.get("put", {}) for path, item in doc["paths"].items()}

    def body(path: str) -> Any:
        return put[path]["requestBody"]["content"]["application/json"]["schema"]

    assert body("/api/v0/host/{address}") is Host.input_schema
    assert body("/api/v0/cluster/{name}") is Cluster.input_schema
    assert body("/api/v0/network/{name}") is Network.input_schema
    assert body("/api/v0/containermanager/{name}") is ContainerManagerConfig.input_schema
    assert body("/api/v0/cluster/{name}/deploy") is ClusterDeploy.input_schema
    params = {p["name"]: p["schema"] for p in put["/api/v0/cluster/{name}/hosts/{address}"][
        "parameters"]}
    assert params == {"name": NAME_SCHEMA, "address": ADDRESS_SCHEMA}
    hosts = doc["paths"]["/api/v0/hosts"]["get"]
    assert {p["name"] for p in hosts["parameters"]} == {"cluster", "status", "limit", "offset"}
    # Every operation says what a refusal looks like.
    for item in doc["paths"].values():
        for op in item.values():
            assert {"400", "413", "503", "504"} <= set(op["responses"])
            # Open paths too: credentials are optional there, and checked when sent.
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
            assert op["responses"]["429"]["headers"]["Retry-After"]["required"]
    assert doc["paths"]["/api/v0/openapi.json"]["get"]["security"] == [{}, {"basic": []}]
    assert set(doc["paths"]["/api/v0/host"]) == {"put"}


def test_self_auth_paths_are_open_in_the_document() -> None:
    from commissaire.config import ServerConfig
    from commissaire_http.app import routes

    table = routes(bus=None, config=ServerConfig(self_auths=["/api/v0/host/"]))  # type: ignore[arg-type]
    doc = table[-1]["resource"].document
    # Anyone may call it; credentials are optional, and checked (401) when sent.
    assert doc["paths"]["/api/v0/host"]["put"]["security"] == [{}, {"basic": []}]
    assert "401" in doc["paths"]["/api/v0/host"]["put"]["responses"]
    assert "security" not in doc["paths"]["/api/v0/host/{address}"]["get"]
