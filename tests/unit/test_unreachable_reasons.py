"""SSH failure reasons cannot be used to scan ports: a closed port, a silent one and
one that speaks another protocol read the same to an API caller."""
from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import asyncssh
import pytest

from commissaire import ssh
from commissaire.ansible import runner
from commissaire.reach import unreachable_reason


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_port() -> Iterator[int]:
    """A port answering like a web server, with a hostile multi-line banner."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Secret: {{ lookup('pipe','id') }}\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts and never says anything."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield int(server.getsockname()[1])
    server.close()


def _probe(port: int) -> str:
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    target = ssh.ProbeTarget("127.0.0.1", key, port=port,
                             host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0f"
                                      "Z0l2b0h3xK3h8Y1Wn1c9oV5y4n6yqYc8Y3p1c2d3")
    return asyncio.run(ssh.probe(target, timeout=1.0)).message


def test_closed_silent_and_foreign_ports_read_the_same(http_port: int, silent_port: int) -> None:
    closed = _free_port()
    reasons = {_probe(closed).replace(str(closed), "P"),
               _probe(silent_port).replace(str(silent_port), "P"),
               _probe(http_port).replace(str(http_port), "P")}
    assert reasons == {unreachable_reason("127.0.0.1", 0).replace(":0 ", ":P ")}
    assert "lookup" not in "".join(reasons) and "HTTP" not in "".join(reasons)


def test_ansible_unreachable_messages_hide_the_detail() -> None:
    target = runner.Target(address="192.0.2.7", private_key="k", port=2222, host_key="x")
    refused = runner.classify_unreachable(
        "Failed to connect to the host via ssh: connect to host 192.0.2.7 port 2222: "
        "Connection refused", target)
    timed_out = runner.classify_unreachable(
        "Failed to connect to the host via ssh: connect to host 192.0.2.7 port 2222: "
        "Connection timed out", target)
    assert refused == timed_out == (runner.UNREACHABLE, unreachable_reason("192.0.2.7", 2222))


def test_a_probe_without_a_pinned_host_key_connects_nowhere(silent_port: int) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    result = asyncio.run(ssh.probe(ssh.ProbeTarget("127.0.0.1", key, port=silent_port),
                                   timeout=1.0))
    assert result.outcome == ssh.HOST_KEY_MISMATCH
    assert "no SSH host key is pinned" in result.message
