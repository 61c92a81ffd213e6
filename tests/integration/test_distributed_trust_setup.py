"""tools/distributed_trust.py turns the example configs (conf/*.conf) into a working
authenticated deployment: the Redis ACL and etcd TLS files it writes start real
servers that the configs' bus URI and etcd handler reach, and that refuse
anonymous clients."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from commissaire.bus import BusClient, BusServer
from commissaire.storage.base import Txn
from commissaire.storage.registry import load_handlers
from tests.support.servers import free_port
from tools import distributed_trust

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _wait(check: object, proc: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: BLE001  (not up yet)
            pass
        time.sleep(0.1)
    raise AssertionError("server did not come up")


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[dict[str, object]]:
    etc = tmp_path / "etc"
    etc.mkdir()
    for conf in (ROOT / "conf").glob("*.conf"):
        shutil.copy(conf, etc / conf.name)
    acl, env_file = tmp_path / "redis-acl.conf", tmp_path / "etcd.env"
    assert distributed_trust.main(["--etc", str(etc), "--redis-include", str(acl),
                                   "--etcd-env", str(env_file)]) == 0
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_port, etcd_port, peer_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(tmp_path), "--include", str(acl)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                   if line and not line.startswith("#"))
        client_url, peer_url = f"https://127.0.0.1:{etcd_port}", f"https://127.0.0.1:{peer_port}"
        env.update(ETCD_LISTEN_CLIENT_URLS=client_url, ETCD_ADVERTISE_CLIENT_URLS=client_url,
                   ETCD_LISTEN_PEER_URLS=peer_url, ETCD_INITIAL_ADVERTISE_PEER_URLS=peer_url,
                   ETCD_INITIAL_CLUSTER=f"default={peer_url}",
                   ETCD_DATA_DIR=str(tmp_path / "etcd-data"))
        procs.append(subprocess.Popen(["etcd"], env={"PATH": os.environ["PATH"], **env},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield {"etc": etc, "redis_port": redis_port, "etcd_url": client_url, "procs": procs}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_the_example_configs_run_authenticated(deployed: dict[str, object]) -> None:
    etc = deployed["etc"]
    assert isinstance(etc, Path)
    procs = deployed["procs"]
    assert isinstance(procs, list)
    confs = {p.name: p for p in etc.glob("*.conf")}
    for name, path in confs.items():
        text = path.read_text()
        assert distributed_trust.PLACEHOLDER not in text, name
        if "bus-uri" in text:
            assert path.stat().st_mode & 0o007 == 0, name  # not world-readable
    storage = json.loads(confs["storage.conf"].read_text())
    bus_uri = storage["bus-uri"].replace(":6379/", f":{deployed['redis_port']}/")

    # Redis: the configured user works, nobody else does.
    _wait(lambda: redis.Redis.from_url(bus_uri, socket_timeout=1).ping(), procs[0])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"redis://127.0.0.1:{deployed['redis_port']}/0").set("a", "b")
    exchange = f"trust-{time.monotonic_ns()}"
    server = BusServer(bus_uri, exchange, "echo", ["echo.*"], lambda m, p, c: {"ok": p})
    server.start()
    assert server.ready.wait(10)
    client = BusClient(bus_uri, exchange, timeout=5)
    try:
        assert client.call("echo.x", {"a": 1}) == {"ok": {"a": 1}}
    finally:
        client.close()
        server.stop()

    # etcd: the storage handler as configured (its TLS options) works; no certificate fails.
    (entry,) = storage["storage-handlers"]
    assert entry["server_url"].startswith("https://")
    entry = {**entry, "server_url": str(deployed["etcd_url"]),
             "prefix": "/trust-test/"}
    for key in ("certificate_ca_path", "certificate_path", "certificate_key_path"):
        assert entry[key].startswith("/etc/commissaire/etcd/")
        entry[key] = str(etc / "etcd" / Path(entry[key]).name)
    with requests.Session() as session:
        session.trust_env = False
        _wait(lambda: session.get(f"{deployed['etcd_url']}/health", verify=entry[
            "certificate_ca_path"], cert=(entry["certificate_path"],
                                          entry["certificate_key_path"]), timeout=1).ok,
              procs[1])
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{deployed['etcd_url']}/health",
                        verify=entry["certificate_ca_path"], timeout=5)
    (handler,) = load_handlers([entry]).all()
    try:
        assert handler.commit(Txn(puts=[("hosts/a", {"v": 1})]))
        item = handler.get("hosts/a")
        assert item is not None and item.value == {"v": 1}
    finally:
        handler.close()


def test_running_it_again_keeps_the_password_and_the_pki(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(ROOT / "conf/watcher.conf", etc / "watcher.conf")
    argv = ["--etc", str(etc), "--redis-include", str(tmp_path / "acl"),
            "--etcd-env", str(tmp_path / "env")]
    distributed_trust.main(argv)
    first = json.loads((etc / "watcher.conf").read_text())["bus-uri"]
    ca = (etc / "etcd/ca.crt").read_bytes()
    shutil.copy(ROOT / "conf/clusterexec.conf", etc / "clusterexec.conf")
    distributed_trust.main(argv)
    assert json.loads((etc / "clusterexec.conf").read_text())["bus-uri"] == first
    assert (etc / "etcd/ca.crt").read_bytes() == ca
    assert oct((etc / "etcd/client.key").stat().st_mode & 0o777) == "0o600"
