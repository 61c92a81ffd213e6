"""Real etcd and Redis servers for integration tests.

Each server runs from the system binary on free loopback ports in its own temp
dir, is waited on until it answers, and is stopped by PID (never by name) with
its dir removed, also when starting it fails.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

import requests

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

    def start(self) -> _Server:
        path = shutil.which(self.binary)
        if path is None:
            raise ServerError(f"{self.binary} is not installed (Debian: apt-get install "
                              f"{'etcd-server' if self.binary == 'etcd' else 'redis-server'})")
        self.tmpdir = tempfile.mkdtemp(prefix=f"commissaire-{self.binary}-")
        self.port = free_port()
        try:
            self._log = open(os.path.join(self.tmpdir, "server.log"), "wb")  # noqa: SIM115
            self._spawn()
        except BaseException:
            self.stop()
            raise
        logger.info("%s started (pid %s) at %s", self.binary, self.proc.pid, self.url)
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

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EtcdServer(_Server):
    """A single-member etcd serving the v3 API on a free loopback port."""

    binary = "etcd"

    def __init__(self) -> None:
        super().__init__()
        self.peer_port = 0

    def command(self) -> list[str]:
        self.peer_port = free_port()
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            "etcd", "--name", "default",
            "--data-dir", os.path.join(self.tmpdir, "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
        ]

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=1).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class RedisServer(_Server):
    """A Redis without persistence on a free loopback port."""

    binary = "redis-server"

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmpdir]

    def ready(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
