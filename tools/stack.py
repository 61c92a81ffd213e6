"""Start a whole Commissaire control plane on loopback, for tests and benchmarks.

Two modes, the two a user runs:

- `AllInOneStack`: `commissaire-allinone` (server + every service in one
  process, SQLite store, in-process bus).
- `DistributedStack`: real Redis and etcd on free ports, each service as its
  own process, `commissaire-server` under gunicorn. Redis takes only its ACL
  user (the password is in each process's config file, never on a command
  line) and etcd only clients with a certificate of its CA, as the README's
  distributed mode asks of a production setup.

Both give `base_url` (…/api/v0), `auth` (a user created for the run), a
`session()` and `stop()`, and are context managers. Service settings (watcher
interval, ssh options…) come from `service_config` ({service: {key: value}}),
written to each service's config file, or in all-in-one mode to the file named by
its --services-config.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import bcrypt
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import EtcdServer, RedisServer, free_port  # noqa: E402

SERVICES = ["storage", "investigator", "watcher", "clusterexec", "containermgr"]
USER = ("operator", "stack-password")


class Processes:
    """Started processes, stopped (TERM, then KILL) in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True, env={**os.environ, **(env or {})})
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=15)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(list(self.procs.values())):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def wait_http(url: str, auth: tuple[str, str] | None, seconds: float,
              alive: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"process exited with {alive.returncode} before {url} answered")
        try:
            if requests.get(url, auth=auth, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


class _Stack:
    mode = ""

    def __init__(self, service_config: dict[str, dict[str, Any]] | None = None,
                 workdir: str | None = None, bcrypt_rounds: int = 4) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"commissaire-{self.mode}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Tests and benchmarks never SSH outside loopback, whatever they register,
        # and call container managers (the Kubernetes stand-in) on loopback only.
        confined = {"ssh-allowed-networks": ["127.0.0.0/8"]}
        self.service_config = {name: {**confined, **(service_config or {}).get(name, {})}
                               for name in ("investigator", "watcher", "clusterexec")}
        self.service_config["containermgr"] = {
            "allowed-urls": ["http://127.0.0.0/8:*", "https://127.0.0.0/8:*"],
            **(service_config or {}).get("containermgr", {})}
        for name, conf in (service_config or {}).items():
            self.service_config.setdefault(name, conf)
        self.procs = Processes(self.workdir)
        self.auth = USER
        self.port = 0
        self.users_file = self.workdir / "users.json"
        self.users_file.write_text(json.dumps({USER[0]: {"hash": bcrypt.hashpw(
            USER[1].encode(), bcrypt.gensalt(bcrypt_rounds)).decode()}}))
        self.bin = Path(sys.executable).parent

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v0"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.auth = self.auth
        return session

    def server_flags(self) -> list[str]:
        return ["--no-config-file", "--listen-interface", "127.0.0.1",
                "--listen-port", str(self.port), "--authentication-plugin",
                f"commissaire_http.authentication.httpbasicauth:filepath={self.users_file}"]

    expected: list[str] = SERVICES

    def wait_ready(self, seconds: float = 60) -> None:
        """Until the server answers and every service started answers its ping."""
        wait_http(f"{self.base_url}/clusters", self.auth, seconds,
                  alive=self.procs.procs.get("server"))
        deadline = time.monotonic() + seconds
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = requests.get(f"{self.base_url}/status", auth=self.auth, timeout=10).json()
            services = status.get("services", {})
            if all(services.get(name, {}).get("status") == "ok" for name in self.expected) \
                    and status.get("store", {}).get("status") == "ok":
                return
            time.sleep(0.3)
        raise RuntimeError(f"{self.mode} stack not healthy: {json.dumps(status)}\n"
                           + self.logs())

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.procs.tail(name)}" for name in self.procs.procs)

    def stop(self) -> None:
        self.procs.stop()

    def __enter__(self) -> _Stack:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError


class AllInOneStack(_Stack):
    mode = "allinone"

    def start(self) -> None:
        self.port = self.port or free_port()  # a restart keeps its port
        config = self.workdir / "commissaire.json"
        config.write_text(json.dumps(self.service_config))
        self.procs.start("server", [str(self.bin / "commissaire-allinone"), *self.server_flags(),
                                    "--data-dir", str(self.workdir / "data"),
                                    "--services-config", str(config)])
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise

    def crash(self, name: str = "server", down: float = 1.0) -> None:
        """kill -9 the all-in-one process and start it again on its data `down` s later."""
        self.procs.kill("server")
        time.sleep(down)
        self.start()


class DistributedStack(_Stack):
    mode = "distributed"

    def __init__(self, *args: Any, workers: int = 2, services: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers
        self.services = services or SERVICES
        self.expected = self.services
        self.redis = RedisServer()
        self.etcd = EtcdServer()

    def service_argv(self, name: str) -> list[str]:
        conf = {"bus-uri": self.redis.url, "bus-exchange": "commissaire",
                **self.service_config.get(name, {})}
        if name == "storage":
            conf.update({"secrets-key-file": str(self.workdir / "secrets.key"),
                         "storage-handlers": [self.etcd.handler_config(watch_cache=True,
                                                                       models=["*"])]})
        path = self.write_private(f"{name}.conf", conf)
        return [str(self.bin / f"commissaire-{name}-service"), "-c", str(path)]

    def write_private(self, name: str, conf: dict[str, Any]) -> Path:
        """A config file only its owner reads: it holds the bus password."""
        path = self.workdir / name
        path.touch(mode=0o600)
        path.write_text(json.dumps(conf))
        return path

    def start_service(self, name: str) -> None:
        self.procs.start(name, self.service_argv(name))

    def start_server(self) -> None:
        config = self.write_private("server.conf", {"bus-uri": self.redis.url})
        flags = [f for f in self.server_flags() if f != "--no-config-file"]
        self.procs.start("server", [str(self.bin / "commissaire-server"), "-c", str(config),
                                    *flags, "--workers", str(self.workers)])

    def crash(self, name: str, down: float = 1.0) -> None:
        """kill -9 the server, a service, Redis or etcd, start it again `down` s
        later (Redis empty, etcd on its data), and wait until the stack answers as
        healthy again."""
        if name in ("redis", "etcd"):
            getattr(self, name).crash(down)
        else:
            self.procs.kill(name)
            time.sleep(down)
            if name == "server":
                self.start_server()
            else:
                self.start_service(name)
        self.wait_ready()

    def start(self) -> None:
        try:
            self.redis.start()
            self.etcd.start()
            subprocess.run([sys.executable, "-m", "commissaire.secrets", "generate",
                            str(self.workdir / "secrets.key")], check=True, capture_output=True)
            for name in self.services:
                self.start_service(name)
            self.port = free_port()
            self.start_server()
            self.wait_ready()
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        super().stop()
        self.etcd.stop()
        self.redis.stop()


def make_stack(mode: str, **kwargs: Any) -> _Stack:
    return {"allinone": AllInOneStack, "distributed": DistributedStack}[mode](**kwargs)


def remove(stack: _Stack) -> None:
    shutil.rmtree(stack.workdir, ignore_errors=True)


StackT = TypeVar("StackT", bound=_Stack)


@contextlib.contextmanager
def running(stack: StackT) -> Iterator[StackT]:
    """`stack` started; stopped and its files removed however the block ends."""
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        remove(stack)
