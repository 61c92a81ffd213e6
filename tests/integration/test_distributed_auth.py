"""Distributed mode authenticated: Redis takes only its ACL user (optionally over
TLS), etcd only clients with a certificate of its CA; the distributed stack runs
that way and its secrets stay off command lines and out of logs."""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from commissaire import errors
from commissaire.bus import BusClient, BusServer
from commissaire.storage.base import Txn
from commissaire.storage.etcd import EtcdStoreHandler
from tests.support.servers import EtcdServer, RedisServer
from tools.stack import DistributedStack, running

pytestmark = pytest.mark.integration


def _refused_by_redis(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.set("commissaire-test", "x")
    except redis.AuthenticationError:
        return True
    except redis.ResponseError as exc:
        return "NOAUTH" in str(exc) or "WRONGPASS" in str(exc)
    finally:
        client.close()
    return False


def test_redis_refuses_clients_without_the_password(redis_server: RedisServer) -> None:
    assert _refused_by_redis(redis_server.anonymous_url)
    wrong = redis_server.url.replace(redis_server.password, "not-the-password")
    assert _refused_by_redis(wrong)
    assert redis.Redis.from_url(redis_server.url).ping()


def test_the_bus_without_credentials_gets_nothing_and_shows_no_password(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Anyone who reaches Redis without the password cannot call storage.reveal_creds."""
    caplog.set_level(logging.DEBUG)
    exchange = f"auth-{time.monotonic_ns()}"
    seen: list[str] = []

    def dispatch(method: str, params: dict[str, Any], context: dict[str, Any]) -> Any:
        seen.append(method)
        return {"ok": 1}

    server = BusServer(redis_server.url, exchange, "storage", ["storage.*"], dispatch)
    server.start()
    assert server.ready.wait(10)
    wrong = redis_server.url.replace(redis_server.password, "guessed-password-123")
    try:
        for uri in (redis_server.anonymous_url, wrong):
            client = BusClient(uri, exchange, timeout=1.5)
            try:
                with pytest.raises(errors.CommissaireError) as caught:
                    client.call("storage.reveal_creds", {"address": "127.0.0.1"})
                assert "guessed-password-123" not in str(caught.value)
            finally:
                client.close()
        assert seen == []
        client = BusClient(redis_server.url, exchange, timeout=5)
        try:
            assert client.call("storage.reveal_creds", {"address": "127.0.0.1"}) == {"ok": 1}
            assert ":**@" in client._safe_uri() and redis_server.password not in client._safe_uri()
        finally:
            client.close()
    finally:
        server.stop()
    assert redis_server.password not in caplog.text
    assert "guessed-password-123" not in caplog.text
    assert "the broker refused our credentials" in caplog.text  # the operator learns why


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[RedisServer]:
    with RedisServer(tls=True) as server:
        yield server


def test_the_bus_over_rediss(tls_redis: RedisServer) -> None:
    assert tls_redis.url.startswith("rediss://")
    exchange = f"tls-{time.monotonic_ns()}"
    server = BusServer(tls_redis.url, exchange, "echo", ["echo.*"],
                       lambda method, params, context: {"echo": params})
    server.start()
    assert server.ready.wait(10)
    client = BusClient(tls_redis.url, exchange, timeout=5)
    try:
        assert client.call("echo.x", {"a": 1}) == {"echo": {"a": 1}}
    finally:
        client.close()
        server.stop()
    # The TLS port does not speak plain Redis, credentials or not.
    plain = tls_redis.url.replace("rediss://", "redis://").split("?", 1)[0]
    client_plain = redis.Redis.from_url(plain, socket_timeout=2)
    with pytest.raises(redis.RedisError):
        client_plain.ping()
    client_plain.close()


def test_etcd_refuses_clients_without_a_certificate(etcd_server: EtcdServer) -> None:
    assert etcd_server.url.startswith("https://")
    options = etcd_server.tls_options
    with requests.Session() as session:
        session.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            session.post(f"{etcd_server.url}/v3/kv/range", json={"key": "Lw=="},
                         verify=options["certificate_ca_path"], timeout=5)
        with pytest.raises(requests.RequestException):
            session.post(etcd_server.url.replace("https", "http") + "/v3/kv/range",
                         json={"key": "Lw=="}, timeout=5)
    no_cert = EtcdStoreHandler(etcd_server.url, timeout=2.0,
                               certificate_ca_path=options["certificate_ca_path"])
    with pytest.raises(errors.StoreUnavailable):
        no_cert.get("hosts/x")
    no_cert.close()
    with_cert = EtcdStoreHandler(etcd_server.url, prefix=f"/auth-{time.monotonic_ns()}/",
                                 certificate_ca_path=options["certificate_ca_path"],
                                 certificate_path=options["certificate_path"],
                                 certificate_key_path=options["certificate_key_path"])
    assert with_cert.commit(Txn(puts=[("a", {"v": 1})]))
    with_cert.close()


def test_etcd_tls_options_are_checked_when_the_handler_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="certificate_ca_path: .* is not a readable file"):
        EtcdStoreHandler("https://127.0.0.1:2379", certificate_ca_path=str(tmp_path / "no"))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValueError, match="need an https:// URL"):
        EtcdStoreHandler("http://127.0.0.1:2379", certificate_ca_path=str(ca))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_the_distributed_stack_runs_authenticated() -> None:
    stack = DistributedStack(services=["storage", "containermgr"], workers=1)
    with running(stack):
        session: Any = stack.session()
        assert session.put(f"{stack.base_url}/cluster/authed", json={}).status_code == 201
        assert session.get(f"{stack.base_url}/cluster/authed").status_code == 200
        # The bus and the store take no anonymous client.
        assert _refused_by_redis(stack.redis.anonymous_url)
        with socket.create_connection(("127.0.0.1", stack.etcd.port), timeout=5):
            pass  # etcd listens...
        assert stack.etcd.pki is not None
        with requests.Session() as raw:
            raw.trust_env = False
            with pytest.raises(requests.exceptions.SSLError):  # ...but not to us
                raw.get(f"{stack.etcd.url}/health", verify=str(stack.etcd.pki.ca_cert),
                        timeout=5)
        # Secrets are in 0600 config files, never on a command line or in a log.
        for name, proc in stack.procs.procs.items():
            assert stack.redis.password not in _cmdline(proc.pid), name
        for conf in stack.workdir.glob("*.conf"):
            assert conf.stat().st_mode & 0o077 == 0, conf
        assert stack.redis.password not in stack.logs()
