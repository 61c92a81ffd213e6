"""The worker's decision "is a whole request here?", and the server's limit settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from falcon import testing

from commissaire import errors
from commissaire.config import ConfigError, ServerConfig, build_server_parser, load_server_config
from commissaire_http.app import create_app
from commissaire_http.framing import COMPLETE, HEAD_LIMIT, MORE, RequestFramer

HEAD = b"PUT /api/v0/host/10.0.0.1 HTTP/1.1\r\nHost: x\r\n"


def examine(*parts: bytes, max_body: int = 1000) -> object:
    framer = RequestFramer(max_body)
    outcome: object = None
    for part in parts:
        framer.feed(part)
        outcome = framer.examine()
    return outcome


def test_half_a_head_is_not_a_request() -> None:
    assert examine(b"GET /api/v0/hosts HTTP/1.1\r\nHost: x\r\nX-A: ") == MORE
    assert examine(b"GET /api/v0/hosts HTTP/1.1\r\nHost: x\r\n\r\n") == COMPLETE
    # The same request one byte at a time.
    whole = b"GET /api/v0/hosts HTTP/1.1\r\nHost: x\r\n\r\n"
    framer = RequestFramer(1000)
    outcomes = []
    for i in range(len(whole)):
        framer.feed(whole[i:i + 1])
        outcomes.append(framer.examine())
    assert outcomes[-1] == COMPLETE and set(outcomes[:-1]) == {MORE}


def test_a_body_is_waited_for_up_to_its_content_length() -> None:
    head = HEAD + b"Content-Length: 10\r\n\r\n"
    assert examine(head + b"12345") == MORE
    assert examine(head + b"12345", b"67890") == COMPLETE


def test_a_body_over_the_cap_is_413_before_it_is_read() -> None:
    outcome = examine(HEAD + b"Content-Length: 1001\r\n\r\n")
    assert isinstance(outcome, errors.PayloadTooLarge) and outcome.http_status == 413
    assert isinstance(examine(HEAD + b"Content-Length: 99999999999999999999\r\n\r\n"),
                      errors.PayloadTooLarge)


def test_chunked_bodies_are_framed_and_capped() -> None:
    head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert examine(head + b"5\r\nhello\r\n") == MORE
    assert examine(head + b"5\r\nhello\r\n0\r\n") == MORE
    assert examine(head + b"5\r\nhello\r\n0\r\n\r\n") == COMPLETE
    assert examine(head + b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n") == COMPLETE
    assert isinstance(examine(head + b"3e9\r\n"), errors.PayloadTooLarge)  # 1001 > 1000
    many = b"".join(b"1f4\r\n" + b"x" * 500 + b"\r\n" for _ in range(3))
    assert isinstance(examine(head, many), errors.PayloadTooLarge)


@pytest.mark.parametrize("request_bytes", [
    HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    HEAD + b"Content-Length: \xb2\r\n\r\n",
    HEAD + b"Content-Length: -1\r\n\r\n",
    HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
])
def test_ambiguous_or_malformed_framing_is_a_400(request_bytes: bytes) -> None:
    outcome = examine(request_bytes)
    assert isinstance(outcome, errors.CommissaireError) and outcome.http_status == 400


@pytest.mark.parametrize("line", [
    b"2;", b" 2 ", b"2 ", b" 2", b"2;=x", b"2;a=", b"2;a b", b"2;\"q\"", b"0x2", b"+2",
    b"2;a=\"x\rz\"", b"2;" + b"a" * 2000,
])
def test_chunk_lines_gunicorn_would_refuse_are_a_400(line: bytes) -> None:
    # Else the app answers, then gunicorn's parser answers again (two responses).
    outcome = examine(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + line + b"\r\n{}\r\n"
                      b"0\r\n\r\n")
    assert isinstance(outcome, errors.CommissaireError) and outcome.http_status == 400


@pytest.mark.parametrize("line", [b"2", b"02", b"2;a", b"2 ;a=b", b"2; a = \"x y\";b"])
def test_chunk_lines_gunicorn_accepts_are_framed(line: bytes) -> None:
    assert examine(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + line + b"\r\n{}\r\n"
                   b"0\r\n\r\n") == COMPLETE


def test_a_body_may_hold_bare_newlines() -> None:
    body = b'{\n "a": 1\n}'
    assert examine(HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body) == COMPLETE


def test_a_head_is_capped() -> None:
    outcome = examine(b"GET / HTTP/1.1\r\nX-A: " + b"a" * (HEAD_LIMIT + 10))
    assert isinstance(outcome, errors.CommissaireError) and outcome.http_status == 431


def test_expect_100_continue_is_noticed() -> None:
    framer = RequestFramer(1000)
    framer.feed(HEAD + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert framer.examine() == MORE and framer.expects_continue


def parse(*argv: str) -> ServerConfig:
    return load_server_config(build_server_parser("t", "t").parse_args(list(argv)))


def test_limit_settings_come_from_file_and_flags(tmp_path: Path) -> None:
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"max-body-size": 2048, "request-read-timeout": 5,
                                "auth-failure-limit": 3, "auth-failure-window": 30}))
    config = parse("-c", str(conf), "--max-body-size", "4096")
    assert (config.max_body_size, config.request_read_timeout, config.auth_failure_limit,
            config.auth_failure_window) == (4096, 5, 3, 30)
    defaults = parse("--no-config-file")
    assert (defaults.max_body_size, defaults.auth_failure_limit) == (1024 * 1024, 10)


@pytest.mark.parametrize("content, message", [
    ('{"max-body-size": 0}', "max-body-size"),
    ('{"max-body-size": "1M"}', "max-body-size"),
    ('{"request-read-timeout": -1}', "request-read-timeout"),
    ('{"auth-failure-window": NaN}', "auth-failure-window"),
    ('{"auth-failure-limit": 2.5}', "auth-failure-limit"),
])
def test_bad_limit_settings_are_named(tmp_path: Path, content: str, message: str) -> None:
    conf = tmp_path / "c.json"
    conf.write_text(content)
    with pytest.raises(ConfigError, match=message):
        parse("-c", str(conf))


def test_the_app_itself_refuses_a_declared_body_over_the_cap() -> None:
    class NoBus:
        def call(self, *args: object, **kwargs: object) -> object:
            raise AssertionError("nothing may reach a service")

    config = ServerConfig(max_body_size=100, authentication_plugins=[])
    result = testing.TestClient(create_app(config, NoBus())).simulate_put(
        "/api/v0/host/10.0.0.1", body=b"x" * 101)
    assert result.status_code == 413
    assert result.json["error"]["code"] == 413
