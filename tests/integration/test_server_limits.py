"""Server limits on the real servers: slow and idle clients hold no request thread,
bodies are capped, TLS handshakes are not done in request threads.

Both modes: commissaire-allinone and commissaire-server (under gunicorn with its
worker processes), started on free loopback ports with tools.stack. The timing
checks are behavioural (a valid request is answered within 1 s while 40 clients
hang half-way), not benchmarks: without the worker they take 20 s and more.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.integration.test_tls import _cert, _write
from tests.support.servers import free_port
from tools.stack import AllInOneStack, DistributedStack, _Stack, running, wait_http

pytestmark = pytest.mark.integration

HANGERS = 40
READ_TIMEOUT = 3.0


class _Limits:
    """Server flags for a short request-read timeout (so the test can watch it act)."""

    def server_flags(self) -> list[str]:
        return [*super().server_flags(),  # type: ignore[misc]
                "--request-read-timeout", str(READ_TIMEOUT)]


class AllInOne(_Limits, AllInOneStack):
    pass


class Distributed(_Limits, DistributedStack):
    pass


@pytest.fixture(scope="module", params=["allinone", "distributed"])
def stack(request: pytest.FixtureRequest) -> Iterator[_Stack]:
    stack_class = AllInOne if request.param == "allinone" else Distributed
    with running(stack_class()) as started:
        yield started


def _address(stack: _Stack) -> tuple[str, int]:
    return ("127.0.0.1", stack.port)


def _hang(address: tuple[str, int], data: bytes, count: int = HANGERS) -> list[socket.socket]:
    """`count` connections that send `data` and then nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address, timeout=5)
        if data:
            sock.sendall(data)
        socks.append(sock)
    return socks


def _timed_get(url: str, **kwargs: Any) -> tuple[requests.Response, float]:
    start = time.monotonic()
    response = requests.get(url, timeout=30, **kwargs)
    return response, time.monotonic() - start


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_forty_half_headers_do_not_delay_a_valid_request(stack: _Stack) -> None:
    hangers = _hang(_address(stack), b"GET /api/v0/clusters HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        time.sleep(0.5)  # the server has read them all by now
        for _ in range(3):
            response, seconds = _timed_get(f"{stack.base_url}/clusters", auth=stack.auth)
            assert response.status_code == 200, response.text
            assert seconds < 1.0, f"a valid request took {seconds:.2f} s behind slow clients"
    finally:
        for sock in hangers:
            sock.close()


def test_idle_and_half_sent_connections_are_closed_after_the_read_timeout(
        stack: _Stack) -> None:
    idle = _hang(_address(stack), b"", count=3)
    half = _hang(_address(stack), b"GET /api/v0/clusters HTTP/1.1\r\nHo", count=3)
    body = _hang(_address(stack), b"PUT /api/v0/host/127.0.0.70 HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 100\r\n\r\n{", count=3)
    try:
        for sock in idle + half + body:
            assert _closed_by_server(sock, READ_TIMEOUT + 3), "a slow client was kept"
    finally:
        for sock in idle + half + body:
            sock.close()


def test_a_two_mib_body_is_413_and_nothing_is_stored(stack: _Stack) -> None:
    key = base64.b64encode(os.urandom(3 * 512 * 1024)).decode()  # 2 MiB of base64
    body = json.dumps({"ssh_priv_key": key, "remote_user": "root"}).encode()
    assert len(body) > 2 * 1024 * 1024
    url = f"{stack.base_url}/host/127.0.0.71"
    response = requests.put(url, data=body, auth=stack.auth, timeout=30)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == 413 and "1048576" in error["description"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    response = requests.put(url, data=chunks(), auth=stack.auth, timeout=30)
    assert response.status_code == 413, response.text
    assert requests.get(url, auth=stack.auth, timeout=10).status_code == 404
    # Without credentials the answer is the same: the body is never read.
    assert requests.put(url, data=body, timeout=30).status_code == 413


def test_keep_alive_and_pipelining_still_work(stack: _Stack) -> None:
    auth = base64.b64encode(":".join(stack.auth).encode()).decode()
    request = (f"GET /api/v0/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
               "\r\n").encode()
    with socket.create_connection(_address(stack), timeout=10) as sock:
        answers = b""
        for _ in range(2):  # one after the other on the same connection
            sock.sendall(request)
            deadline = time.monotonic() + 10
            while answers.count(b"HTTP/1.1 200") < _ + 1 and time.monotonic() < deadline:
                answers += sock.recv(65536)
        sock.sendall(request * 3)  # three at once
        deadline = time.monotonic() + 10
        while answers.count(b"HTTP/1.1 200") < 5 and time.monotonic() < deadline:
            answers += sock.recv(65536)
    assert answers.count(b"HTTP/1.1 200") == 5


def test_a_slow_but_timely_client_and_expect_100_continue_are_served(stack: _Stack) -> None:
    auth = base64.b64encode(":".join(stack.auth).encode()).decode()
    head = (f"PUT /api/v0/cluster/slowpoke HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 2\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(_address(stack), timeout=10) as sock:
        for i in range(0, len(head), 20):  # the head in pieces, well within the timeout
            sock.sendall(head[i:i + 20])
            time.sleep(0.05)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"{}")
        answer = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def _slow_readers(address: tuple[str, int], count: int = 10) -> list[socket.socket]:
    """`count` connections that pipeline a large response 100 times and never read."""
    request = b"GET /api/v0/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 100
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(address)
        sock.sendall(request)
        socks.append(sock)
    return socks


def _closed_after_draining(sock: socket.socket) -> bool:
    sock.settimeout(3)
    try:
        while sock.recv(1 << 20):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def test_clients_that_do_not_read_do_not_delay_a_valid_request(stack: _Stack) -> None:
    openapi = requests.get(f"{stack.base_url}/openapi.json", timeout=10)
    assert openapi.status_code == 200 and len(openapi.content) > 100_000  # a large answer
    # 10 non-readers took all 10 threads of a worker; 20 per worker (gunicorn's
    # accepts spread them unevenly) leave none free anywhere without the fix.
    readers = _slow_readers(_address(stack), count=20 * getattr(stack, "workers", 1))
    try:
        time.sleep(1.0)  # their responses fill the sockets and stall
        for _ in range(3):
            response, seconds = _timed_get(f"{stack.base_url}/hosts", auth=stack.auth)
            assert response.status_code == 200, response.text
            assert seconds < 1.0, f"a valid request took {seconds:.2f} s behind non-readers"
        time.sleep(READ_TIMEOUT + 1.5)  # they are let go once their response is overdue
        for sock in readers:
            assert _closed_after_draining(sock), "a client that does not read was kept"
    finally:
        for sock in readers:
            sock.close()


def _all_answers(sock: socket.socket, within: float = 5.0) -> bytes:
    sock.settimeout(within)
    answers = b""
    try:
        while data := sock.recv(65536):
            answers += data
    except (TimeoutError, ConnectionResetError):
        pass
    return answers


@pytest.mark.parametrize("line", [b"2;", b" 2 "])
def test_a_chunk_line_gunicorn_refuses_gets_one_400_only(stack: _Stack, line: bytes) -> None:
    auth = base64.b64encode(":".join(stack.auth).encode()).decode()
    request = (f"PUT /api/v0/cluster/chunky HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               ).encode() + line + b"\r\n{}\r\n0\r\n\r\n"
    with socket.create_connection(_address(stack), timeout=10) as sock:
        sock.sendall(request)
        answers = _all_answers(sock)
    assert answers.count(b"HTTP/1.1 ") == 1, answers
    assert answers.startswith(b"HTTP/1.1 400"), answers
    body = answers.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"]["code"] == 400
    assert requests.get(f"{stack.base_url}/cluster/chunky", auth=stack.auth,
                        timeout=10).status_code == 404


# -- TLS ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("tls-limits")
    ca_key, ca_cert = _cert("test CA", ca=True)
    ca = work / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server = _write(work / "server.pem", *_cert("127.0.0.1", ca_key, ca_cert.subject))
    operator = _write(work / "operator.pem", *_cert("operator", ca_key, ca_cert.subject))
    users = work / "users.json"
    users.write_text(json.dumps({"a": {"hash": bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()}}))
    port = free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "commissaire-allinone"), "--no-config-file",
         "-i", "127.0.0.1", "-p", str(port), "--data-dir", str(work / "data"),
         "--tls-pemfile", str(server), "--tls-clientverifyfile", str(ca),
         "--request-read-timeout", str(READ_TIMEOUT),
         "--authentication-plugin",
         "commissaire_http.authentication.httpauthclientcert:cn=operator",
         "--authentication-plugin",
         f"commissaire_http.authentication.httpbasicauth:filepath={users}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"https://127.0.0.1:{port}/api/v0"
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
    try:
        wait_http(f"{base}/clusters", ("a", "a"), 60, alive=proc)
        yield {"base": base, "port": port, "ca": str(ca), "operator": str(operator)}
    finally:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


def _tls_half_header(port: int, ca: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=ca)
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                               server_hostname="127.0.0.1")
    sock.sendall(b"GET /api/v0/clusters HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return sock


def test_slow_tls_handshakes_and_half_headers_do_not_block(tls_server: dict[str, Any]) -> None:
    port = tls_server["port"]
    # Half a ClientHello (a TLS record header announcing more than is sent) ...
    hangers = _hang(("127.0.0.1", port), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                    count=HANGERS // 2)
    hangers += _hang(("127.0.0.1", port), b"", count=HANGERS // 4)  # ... or nothing at all,
    hangers += [_tls_half_header(port, tls_server["ca"])  # ... or half a header over TLS
                for _ in range(HANGERS // 4)]
    try:
        time.sleep(0.5)
        response, seconds = _timed_get(f"{tls_server['base']}/clusters",
                                       cert=tls_server["operator"], verify=tls_server["ca"])
        assert response.status_code == 200, response.text
        assert seconds < 1.0, f"a valid request took {seconds:.2f} s behind slow TLS clients"
        response, seconds = _timed_get(f"{tls_server['base']}/clusters", auth=("a", "a"),
                                       verify=tls_server["ca"])
        assert response.status_code == 200 and seconds < 1.0
        for sock in hangers:
            assert _closed_by_server(sock, READ_TIMEOUT + 3), "a slow TLS client was kept"
    finally:
        for sock in hangers:
            sock.close()


def test_a_two_mib_body_over_tls_is_413(tls_server: dict[str, Any]) -> None:
    response = requests.put(f"{tls_server['base']}/host/127.0.0.72", data=b"x" * (2 << 20),
                            cert=tls_server["operator"], verify=tls_server["ca"], timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == 413


def test_large_pipelined_responses_over_tls_reach_a_slow_reader(
        tls_server: dict[str, Any]) -> None:
    # The loop sends responses on a non-blocking TLS socket (SSLWantWrite): a client
    # with a small window that reads slowly still gets every byte, in order.
    context = ssl.create_default_context(cafile=tls_server["ca"])
    context.load_cert_chain(tls_server["operator"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", tls_server["port"]))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /api/v0/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        time.sleep(0.5)  # the first response stalls on the full socket meanwhile
        answers = b""
        deadline = time.monotonic() + 20
        bodies: list[bytes] = []
        while len(bodies) < 3:
            assert time.monotonic() < deadline, answers[:300]
            answers += sock.recv(4096)
            head, sep, rest = answers.partition(b"\r\n\r\n")
            if not sep:
                continue
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                bodies.append(rest[:length])
                answers = rest[length:]
    for body in bodies:
        assert json.loads(body)["openapi"].startswith("3.")
