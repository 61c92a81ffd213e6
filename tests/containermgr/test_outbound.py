"""Outbound calls of the container manager service: what an API server answers is
never passed on, failures to connect all read the same, and only the URLs of its
`allowed-urls` setting are called (after DNS resolution, and on the connected peer)."""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from commissaire import errors
from commissaire_service.builders import build_containermgr
from commissaire_service.containermgr import allow
from commissaire_service.containermgr.allow import AllowedURLs
from commissaire_service.containermgr.service import ContainerManagerService
from tests.containermgr.fakes import LOOPBACK, TOKEN, FakeBus, closed_port
from tests.k8s_standin.server import KubeStandIn

NODE = "10.1.2.3"
ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "{{ lookup('pipe', 'id > /tmp/pwned') }}\n; touch /tmp/pwned REMOTE-WORDS"


class _Hostile:
    """An 'API server' that answers every request with `code` and hostile text."""

    def __init__(self, code: int, body: Any) -> None:
        self.code, self.body = code, body
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append(dict(self.headers))
                data = json.dumps(outer.body).encode() if not isinstance(outer.body, str) \
                    else outer.body.encode()
                self.send_response(outer.code, "Reason " + HOSTILE.replace("\n", " "))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile() -> Iterator[Any]:
    made: list[_Hostile] = []

    def make(code: int, body: Any) -> _Hostile:
        made.append(_Hostile(code, body))
        return made[-1]

    yield make
    for server in made:
        server.stop()


def _text(exc: errors.CommissaireError) -> str:
    return str(exc) + exc.description + json.dumps(exc.details, default=str)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 429, 500, 503])
@pytest.mark.parametrize("body", [
    {"kind": "Status", "reason": HOSTILE, "message": HOSTILE,
     "details": {"causes": [{"message": HOSTILE}]}},
    HOSTILE,
])
def test_an_answer_is_never_passed_on(service: ContainerManagerService, bus: FakeBus,
                                      hostile: Any, code: int, body: Any) -> None:
    server = hostile(code, body)
    bus.add("k8s", "kubernetes", server_url=server.url, token=TOKEN)
    for call in (service.register_node, service.get_node_status, service.cordon):
        try:
            call("k8s", NODE)
        except errors.CommissaireError as exc:
            text = _text(exc)
            assert "REMOTE-WORDS" not in text and "lookup" not in text and "\n" not in text
            if code not in (404, 409):
                assert f"HTTP {code}" in text


def test_node_conditions_keep_only_their_kubernetes_shapes(
        service: ContainerManagerService, bus: FakeBus, hostile: Any) -> None:
    server = hostile(200, {"kind": "Node", "metadata": {"name": NODE}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": HOSTILE, "message": HOSTILE,
         "lastTransitionTime": HOSTILE},
        {"type": HOSTILE, "status": "True"},
        {"type": "MemoryPressure", "status": HOSTILE, "reason": "KubeletHasSufficientMemory",
         "message": "kubelet has sufficient memory", "lastTransitionTime": "2026-12-03T09:00:00Z"},
    ]}})
    bus.add("k8s", "kubernetes", server_url=server.url, token=TOKEN)
    status = service.get_node_status("k8s", NODE)
    assert status["ready"] is True
    assert status["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "", "last_transition_time": None},
        {"type": "MemoryPressure", "status": "Unknown", "reason": "KubeletHasSufficientMemory",
         "last_transition_time": "2026-12-03T09:00:00Z"},
    ]


def test_the_remote_words_go_to_the_service_log_only(
        service: ContainerManagerService, bus: FakeBus, hostile: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    server = hostile(500, {"kind": "Status", "message": "etcd is down " + TOKEN})
    bus.add("k8s", "kubernetes", server_url=server.url, token=TOKEN)
    with pytest.raises(errors.ContainerManagerError) as caught:
        service.register_node("k8s", NODE)
    assert caught.value.description == (
        "registering node 10.1.2.3: container manager 'k8s': its API server answered "
        "POST /api/v1/nodes with HTTP 500") or "HTTP 500" in caught.value.description
    assert "etcd is down" in caplog.text and TOKEN not in caplog.text


class _Listener:
    """A loopback port that accepts and then misbehaves (closes, or sends garbage)."""

    def __init__(self, send: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.send = send
        self.stopping = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(self.send)
                except OSError:
                    pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.stopping = True
        self.sock.close()


def test_connection_failures_all_read_the_same(service: ContainerManagerService,
                                               bus: FakeBus) -> None:
    """Closed port, a port that hangs up, one that speaks something else (SSH, Redis):
    one message, so a server_url cannot tell them apart (no port scanning)."""
    listeners = [_Listener(b""), _Listener(b"SSH-2.0-OpenSSH_9.2\r\n"),
                 _Listener(b"-ERR unknown command\r\n")]
    try:
        urls = [f"http://127.0.0.1:{closed_port()}"] + [x.url for x in listeners]
        seen = set()
        for n, url in enumerate(urls):
            bus.add(f"m{n}", "kubernetes", server_url=url, token=TOKEN, request_timeout=2)
            with pytest.raises(errors.ContainerManagerError) as caught:
                service.get_node_status(f"m{n}", NODE)
            seen.add(caught.value.description.replace(f"'m{n}'", "'X'"))
        assert seen == {"container manager 'X': cannot connect to its API server"}
    finally:
        for listener in listeners:
            listener.close()


# -- allowed-urls ---------------------------------------------------------------------


def test_no_setting_allows_nothing_and_sends_nothing(bus: FakeBus,
                                                     standin: KubeStandIn) -> None:
    service = ContainerManagerService(bus, poll_interval=0.05)
    try:
        bus.add("k8s", "kubernetes", server_url=standin.url, token=TOKEN)
        with pytest.raises(errors.ContainerManagerError) as caught:
            service.register_node("k8s", NODE)
        assert "allowed-urls setting: none" in caught.value.description
        assert standin.requests == []  # the token went nowhere
        bus.add("t", "trivial")
        assert service.node_ready("t", NODE) is True  # trivial contacts nothing
    finally:
        service.stop()


@pytest.mark.parametrize("setting, allowed", [
    (["http://127.0.0.0/8:*"], True),
    (["http://127.0.0.1:*"], True),
    (["http://*:*"], True),
    (["https://127.0.0.0/8:*"], False),  # another scheme
    (["http://127.0.0.0/8"], False),  # port 80 only
    (["http://10.0.0.0/8:*"], False),
    (["http://localhost:*"], False),  # a name matches that name only
])
def test_an_entry_matches_scheme_host_and_port(bus: FakeBus, standin: KubeStandIn,
                                               setting: list[str], allowed: bool) -> None:
    service = ContainerManagerService(bus, allowed_urls=AllowedURLs.from_setting(setting))
    try:
        bus.add("k8s", "kubernetes", server_url=standin.url, token=TOKEN)
        if allowed:
            assert service.get_node_status("k8s", NODE)["status"] == "absent"
        else:
            with pytest.raises(errors.ContainerManagerError, match="allowed-urls"):
                service.get_node_status("k8s", NODE)
            assert standin.requests == []
    finally:
        service.stop()


def test_a_name_resolving_outside_the_networks_is_refused(bus: FakeBus,
                                                          standin: KubeStandIn) -> None:
    port = standin.url.rsplit(":", 1)[1]
    service = ContainerManagerService(
        bus, allowed_urls=AllowedURLs.from_setting(["http://192.0.2.0/24:*"]))
    try:
        bus.add("k8s", "kubernetes", server_url=f"http://localhost:{port}", token=TOKEN)
        with pytest.raises(errors.ContainerManagerError, match="allowed-urls"):
            service.get_node_status("k8s", NODE)
        # As a number, 127.0.0.1 in disguise: resolved, and refused the same way.
        bus.add("k8s", "kubernetes", server_url=f"http://2130706433:{port}", token=TOKEN)
        with pytest.raises(errors.ContainerManagerError, match="allowed-urls"):
            service.get_node_status("k8s", NODE)
        assert standin.requests == []
    finally:
        service.stop()


def test_the_connected_peer_is_checked_too(bus: FakeBus, standin: KubeStandIn,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolves inside the networks when checked, but the
    connection reaches another address; nothing is sent to it."""
    port = standin.url.rsplit(":", 1)[1]
    monkeypatch.setattr(allow, "_resolve", lambda host, port: {"127.0.0.2"})
    service = ContainerManagerService(
        bus, allowed_urls=AllowedURLs.from_setting(["http://127.0.0.2/32:*"]))
    try:
        bus.add("k8s", "kubernetes", server_url=f"http://localhost:{port}", token=TOKEN)
        with pytest.raises(errors.ContainerManagerError,
                           match="cannot connect to its API server"):
            service.get_node_status("k8s", NODE)
        assert standin.requests == []
    finally:
        service.stop()


def test_a_url_with_user_information_is_refused(service: ContainerManagerService,
                                                bus: FakeBus, standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=standin.url.replace("//", "//user:pw@"))
    with pytest.raises(errors.ValidationError) as caught:
        service.get_node_status("k8s", NODE)
    assert caught.value.details.get("field") == "options.server_url" or \
        "server_url" in str(caught.value)
    assert standin.requests == []


@pytest.mark.parametrize("entry", ["ftp://*:21", "http://", "http://10.0.0.0/33:*",
                                   "https://k8s:99999", "http://a b:80", "*"])
def test_a_bad_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed-urls"):
        build_containermgr({"allowed-urls": [entry]}, FakeBus())
    with pytest.raises(ValueError, match="must be a list"):
        build_containermgr({"allowed-urls": "https://*:*"}, FakeBus())


def test_entries_parse() -> None:
    parsed = AllowedURLs.from_setting(["https://K8S.example.com", "https://[fd00::/8]:6443",
                                       "http://127.0.0.1:*", "https://*:*"])
    assert str(parsed) == ("https://k8s.example.com:443, https://[fd00::/8]:6443, "
                           "http://127.0.0.1/32:*, https://*:*")


def test_shipped_configs_allow_the_loopback_standin_only_where_meant(
        standin: KubeStandIn) -> None:
    allinone = json.loads((ROOT / "conf/allinone-services.json").read_text())
    shipped = AllowedURLs.from_setting(allinone["containermgr"]["allowed-urls"])
    # A Kubernetes API server on this machine's loopback, at its usual port: yes.
    shipped.check("https://127.0.0.1:6443", "k8s")
    # Anything else on loopback (the API itself, Redis, etcd, a plain-http
    # stand-in) would receive the token: no. Nor any other network.
    for url in (standin.url, "http://127.0.0.1:8000/api/v0", "https://127.0.0.1:2379",
                "https://192.0.2.1:6443"):
        with pytest.raises(errors.ContainerManagerError):
            shipped.check(url, "k8s")
    example = json.loads((ROOT / "conf/containermgr.conf").read_text())
    AllowedURLs.from_setting(example.get("allowed-urls"))  # parses
    assert LOOPBACK.entries  # the tests' setting is loopback only
    assert all(e.network is not None and e.network.is_loopback for e in LOOPBACK.entries)


# -- files named by options ------------------------------------------------------------


@pytest.mark.parametrize("option", ["certificate_authority", "client_certificate"])
@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/commissaire/etcd/client.key",
                                  "/nonexistent/x.pem", "/tmp/../etc/shadow"])
def test_files_outside_the_certificate_dirs_are_never_read(
        bus: FakeBus, standin: KubeStandIn, tmp_path: Path, option: str, path: str) -> None:
    """An API caller cannot make the service read (or present) a file of the controller,
    nor learn whether one exists: one answer for all, before anything is opened."""
    service = ContainerManagerService(bus, allowed_urls=LOOPBACK,
                                      certificate_dirs=(str(tmp_path),))
    try:
        bus.add("k8s", "kubernetes", server_url=standin.url, **{option: path})
        with pytest.raises(errors.ContainerManagerError) as caught:
            service.get_node_status("k8s", NODE)
        assert caught.value.description == (
            f"container manager 'k8s': options.{option} must name a file under {tmp_path} "
            "(the containermgr service's certificate-dirs setting)")
        assert standin.requests == []
    finally:
        service.stop()


def test_a_link_out_of_the_certificate_dirs_is_refused(bus: FakeBus, standin: KubeStandIn,
                                                       tmp_path: Path) -> None:
    (tmp_path / "ca.pem").symlink_to("/etc/passwd")
    service = ContainerManagerService(bus, allowed_urls=LOOPBACK,
                                      certificate_dirs=(str(tmp_path),))
    try:
        bus.add("k8s", "kubernetes", server_url=standin.url,
                certificate_authority=str(tmp_path / "ca.pem"))
        with pytest.raises(errors.ContainerManagerError, match="certificate-dirs"):
            service.get_node_status("k8s", NODE)
    finally:
        service.stop()


def test_certificate_dirs_setting() -> None:
    assert build_containermgr({}, FakeBus()).certificate_dirs == ("/etc/commissaire/containermgr",)
    assert build_containermgr({"certificate-dirs": ["/srv/k8s"]}, FakeBus()).certificate_dirs == \
        ("/srv/k8s",)
    with pytest.raises(ValueError, match="certificate-dirs"):
        build_containermgr({"certificate-dirs": ["relative"]}, FakeBus())
