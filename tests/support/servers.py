"""Real etcd and Redis servers for integration tests.

Each server runs from the system binary on free loopback ports in its own temp
dir, is waited on until it answers, and is stopped by PID (never by name) with
its dir removed, also when starting it fails.

Both run as production should (README, "Distributed mode"): Redis refuses
clients without credentials (the `default` user is off; `url` carries an ACL
user and a password generated per server; `tls=True` serves `rediss://` only),
and etcd serves TLS and accepts only clients with a certificate of its CA
(`tls_options` are the etcd store handler's options). Certificates are made
per server with `cryptography` (tests/k8s_standin/tls.py).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

from tests.k8s_standin.tls import Pki, make_pki

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerError(RuntimeError):
    """A test server could not be started."""


class _Server:
    """A child process in a temp dir, started on enter and stopped on exit."""

    binary = ""
    start_timeout = 20.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmpdir = ""
        self.port = 0
        self._log: Any = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Files the server needs in `tmpdir` (config, certificates), made once."""

    def start(self) -> _Server:
        path = shutil.which(self.binary)
        if path is None:
            raise ServerError(f"{self.binary} is not installed (Debian: apt-get install "
                              f"{'etcd-server' if self.binary == 'etcd' else 'redis-server'})")
        self.tmpdir = tempfile.mkdtemp(prefix=f"commissaire-{self.binary}-")
        self.port = free_port()
        try:
            self._log = open(os.path.join(self.tmpdir, "server.log"), "wb")  # noqa: SIM115
            self.prepare()
            self._spawn()
        except BaseException:
            self.stop()
            raise
        assert self.proc is not None
        logger.info("%s started (pid %s) at %s", self.binary, self.proc.pid, self.shown_url)
        return self

    def _spawn(self) -> None:
        """Run the server in its dir, logging to its log, and wait until it answers."""
        self.proc = subprocess.Popen(self.command(), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.tmpdir)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.binary} exited with {self.proc.returncode}:\n"
                                  f"{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise ServerError(f"{self.binary} did not answer within {self.start_timeout}s:\n"
                          f"{self.log_tail()}")

    def crash(self, down: float = 1.0) -> None:
        """kill -9, then start again `down` s later on the same port and data."""
        assert self.proc is not None, "not started"
        self.proc.kill()
        self.proc.wait(10)
        time.sleep(down)
        self._spawn()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(os.path.join(self.tmpdir, "server.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the process by its PID (TERM, then KILL) and remove the temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def shown_url(self) -> str:
        """`url` as logs may show it (no password)."""
        return self.url

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EtcdServer(_Server):
    """A single-member etcd serving the v3 API on a free loopback port.

    With `tls` (the default) clients and peers need a certificate of the
    server's own CA (`--client-cert-auth`); `tls=False` is plain HTTP."""

    binary = "etcd"

    def __init__(self, tls: bool = True) -> None:
        super().__init__()
        self.peer_port = 0
        self.tls = tls
        self.pki: Pki | None = None

    def prepare(self) -> None:
        if self.tls:
            # The server certificate is also a client one: etcd's gRPC gateway and
            # its peers present it to the server itself.
            self.pki = make_pki(Path(self.tmpdir) / "pki", name="etcd", server_is_client=True)

    def command(self) -> list[str]:
        self.peer_port = free_port()
        scheme = "https" if self.tls else "http"
        peer = f"{scheme}://127.0.0.1:{self.peer_port}"
        argv = [
            "etcd", "--name", "default",
            "--data-dir", os.path.join(self.tmpdir, "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
        ]
        if self.pki is not None:
            pki = self.pki
            argv += ["--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key),
                     "--trusted-ca-file", str(pki.ca_cert), "--client-cert-auth",
                     "--peer-cert-file", str(pki.server_cert),
                     "--peer-key-file", str(pki.server_key),
                     "--peer-trusted-ca-file", str(pki.ca_cert), "--peer-client-cert-auth"]
        return argv

    @property
    def tls_options(self) -> dict[str, str]:
        """The etcd store handler's TLS options (as in storage-handlers), {} without TLS."""
        if self.pki is None:
            return {}
        return {"certificate_ca_path": str(self.pki.ca_cert),
                "certificate_path": str(self.pki.client_cert),
                "certificate_key_path": str(self.pki.client_key)}

    def handler_config(self, **extra: Any) -> dict[str, Any]:
        """A `storage-handlers` entry for this server."""
        return {"name": "commissaire.storage.etcd", "server_url": self.url,
                **self.tls_options, **extra}

    def requests_options(self) -> dict[str, Any]:
        """verify/cert for `requests` calls straight to this etcd."""
        if self.pki is None:
            return {}
        return {"verify": str(self.pki.ca_cert),
                "cert": (str(self.pki.client_cert), str(self.pki.client_key))}

    def raw_client(self) -> Any:
        """An etcd3gw client with this server's client certificate (for raw reads)."""
        import etcd3gw

        options = self.tls_options
        client = etcd3gw.client(host="127.0.0.1", port=self.port,
                                protocol="https" if self.tls else "http",
                                ca_cert=options.get("certificate_ca_path"),
                                cert_cert=options.get("certificate_path"),
                                cert_key=options.get("certificate_key_path"))
        # REQUESTS_CA_BUNDLE in the environment would win over the session's CA.
        client.session.trust_env = False
        return client

    def ready(self) -> bool:
        try:
            with requests.Session() as session:
                session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
                return session.get(f"{self.url}/health", timeout=1,
                                   **self.requests_options()).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


class RedisServer(_Server):
    """A Redis without persistence on a free loopback port, for one ACL user.

    The `default` user is off, so a client without credentials can run no
    command; `url` carries `user` and a password made for this server. With
    `tls`, only TLS is served (`url` is `rediss://...`, verifying the server's
    certificate against its CA)."""

    binary = "redis-server"

    def __init__(self, tls: bool = False, user: str = "commissaire") -> None:
        super().__init__()
        self.tls = tls
        self.user = user
        self.password = secrets.token_urlsafe(24)
        self.pki: Pki | None = None

    def prepare(self) -> None:
        lines = ["bind 127.0.0.1", 'save ""', "appendonly no", f"dir {self.tmpdir}",
                 "user default off",
                 # Everything kombu needs; no server administration (CONFIG, ACL, ...).
                 f"user {self.user} on >{self.password} ~* &* +@all -@admin"]
        if self.tls:
            self.pki = make_pki(Path(self.tmpdir) / "pki", name="redis")
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {self.pki.server_cert}",
                      f"tls-key-file {self.pki.server_key}",
                      f"tls-ca-cert-file {self.pki.ca_cert}", "tls-auth-clients no"]
        else:
            lines.append(f"port {self.port}")
        conf = Path(self.tmpdir) / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return ["redis-server", os.path.join(self.tmpdir, "redis.conf")]

    def ready(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _url(self, credentials: str) -> str:
        if not self.tls:
            return f"redis://{credentials}127.0.0.1:{self.port}/0"
        assert self.pki is not None, "start() the server first"
        return (f"rediss://{credentials}127.0.0.1:{self.port}/0?ssl_cert_reqs=required"
                f"&ssl_ca_certs={quote(str(self.pki.ca_cert))}")

    @property
    def url(self) -> str:
        """The bus URI, with the credentials."""
        return self._url(f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@")

    @property
    def anonymous_url(self) -> str:
        """The same server without credentials (refused)."""
        return self._url("")

    @property
    def shown_url(self) -> str:
        return self._url(f"{quote(self.user, safe='')}:**@")
