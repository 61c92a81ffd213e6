"""commctl against the real REST app and the real storage service, served over HTTP.

The app is the server's own (create_app) with the storage service behind a
direct in-memory bus, served by wsgiref on a free 127.0.0.1 port in a thread, so
commctl's requests, failover, auth and error mapping all go over real HTTP.
"""
from __future__ import annotations

import io
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
import pytest

from commctl.cli import main
from commissaire.config import ServerConfig
from commissaire_http.app import create_app
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox

USER, PASSWORD = "operator", "s3cret"


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LiveServer:
    url: str
    storage: StorageService
    bus: DirectBus
    store: DictStore


@pytest.fixture
def server() -> Iterator[LiveServer]:
    bus = DirectBus()
    store = DictStore()
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    users = {USER: {"hash": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}}
    config = ServerConfig(authentication_plugins=[
        {"name": "commissaire_http.authentication.httpbasicauth", "users": users}])
    httpd = make_server("127.0.0.1", 0, create_app(config, bus), server_class=_ThreadingServer,
                        handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{httpd.server_port}", storage, bus, store)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Terminal(io.StringIO):
    """stdin or stdout as a terminal."""

    def isatty(self) -> bool:
        return True


class Commctl:
    """Runs commctl.cli.main in-process with its own HOME and configuration."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str], server: LiveServer,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.capsys = capsys
        self.server = server
        self.monkeypatch = monkeypatch
        self.config = home / ".commissaire.json"
        self.configure(endpoint=server.url)
        self.env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def configure(self, **config: Any) -> None:
        config.setdefault("username", USER)
        config.setdefault("password", PASSWORD)
        self.config.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))

    def __call__(self, *argv: str, stdin: str = "", tty: bool = False, **env: str) -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr("sys.stdin", (Terminal if tty else io.StringIO)(stdin))
        code = main(list(argv), {**self.env, **env})
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def commctl(tmp_path: Path, capsys: pytest.CaptureFixture[str], server: LiveServer,
            monkeypatch: pytest.MonkeyPatch) -> Commctl:
    home = tmp_path / "home"
    home.mkdir()
    return Commctl(home, capsys, server, monkeypatch)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A stand-in private key (the server stores it, never parses it) and its .pub."""
    path = tmp_path / "id_test"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                    "-----END OPENSSH PRIVATE KEY-----\n")
    path.with_suffix(".pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2U= operator\n")
    return path
