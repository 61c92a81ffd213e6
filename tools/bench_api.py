"""Benchmark: GET /api/v0/host/{address} through the full distributed stack,
against its floor (falcon + gunicorn doing one bus round trip), in one run.

Both sides run on this machine with the same gunicorn settings, the same Redis,
and wrk as the load (20 connections by default). Reported: requests/s, p50/p99
latency and errors of each, and the ratio full/floor. Goal: ratio >= 0.60,
p99 <= 50 ms at 20 connections, 0 errors.

    python tools/bench_api.py [--seconds 15] [--connections 20] [--hosts 100]

Everything binds 127.0.0.1 on free ports and is stopped at the end.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bcrypt
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import EtcdServer, RedisServer, free_port  # noqa: E402

AUTH = ("bench", "bench-password")


class Processes:
    """Started processes, stopped (TERM, then KILL) in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def wait_http(url: str, auth: tuple[str, str] | None = None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, auth=auth, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def wrk(url: str, seconds: int, connections: int, auth: bool) -> dict[str, Any]:
    header = ["-H", "Authorization: Basic " + base64.b64encode(
        f"{AUTH[0]}:{AUTH[1]}".encode()).decode()] if auth else []
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          *header, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$",
                                                   out, re.M)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket:
        errors += sum(int(x) for x in socket.groups())
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"), "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="commissaire-bench-"))
    procs = Processes(workdir)
    bin_dir = Path(sys.executable).parent
    try:
        with RedisServer() as redis, EtcdServer() as etcd:
            users = workdir / "users.json"
            users.write_text(json.dumps({AUTH[0]: {"hash": bcrypt.hashpw(
                AUTH[1].encode(), bcrypt.gensalt(12)).decode()}}))
            key = workdir / "secrets.key"
            subprocess.run([sys.executable, "-m", "commissaire.secrets", "generate", str(key)],
                           check=True, capture_output=True)
            storage_conf = workdir / "storage.json"
            storage_conf.write_text(json.dumps({
                "bus-uri": redis.url, "secrets-key-file": str(key),
                "storage-handlers": [{"name": "commissaire.storage.etcd",
                                      "server_url": etcd.url, "models": ["*"]}]}))
            procs.start("storage", [str(bin_dir / "commissaire-storage-service"),
                                    "-c", str(storage_conf), "--log-level", "WARNING"])
            port = free_port()
            procs.start("server", [
                str(bin_dir / "commissaire-server"), "--no-config-file",
                "--listen-interface", "127.0.0.1", "--listen-port", str(port),
                "--bus-uri", redis.url, "--workers", str(args.workers),
                "--authentication-plugin",
                f"commissaire_http.authentication.httpbasicauth:filepath={users}"])
            floor_port = free_port()
            procs.start("floor-echo", [sys.executable, "-m", "tools.bench.floor", "echo",
                                       "--bus-uri", redis.url])
            procs.start("floor", [sys.executable, "-m", "tools.bench.floor", "serve",
                                  "--bus-uri", redis.url, "--port", str(floor_port),
                                  "--workers", str(args.workers), "--threads",
                                  str(args.threads)])
            base = f"http://127.0.0.1:{port}/api/v0"
            wait_http(f"{base}/clusters", AUTH)
            wait_http(f"http://127.0.0.1:{floor_port}/floor/x")
            session = requests.Session()
            session.auth = AUTH
            deadline = time.monotonic() + 30
            while session.put(f"{base}/cluster/bench", json={}).status_code >= 500:
                if time.monotonic() > deadline:
                    raise RuntimeError("cannot create the cluster: " + procs.tail("storage"))
                time.sleep(0.5)
            key_b64 = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\n").decode()
            for i in range(args.hosts):
                address = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256 + 1}"
                session.put(f"{base}/host/{address}", json={"ssh_priv_key": key_b64,
                                                            "cluster": "bench"})
            target = f"{base}/host/10.0.0.{min(args.hosts, 200) // 2 + 1}"
            assert session.get(target).status_code == 200, session.get(target).text
            floor_url = f"http://127.0.0.1:{floor_port}/floor/10.0.0.1"
            wrk(floor_url, 3, args.connections, auth=False)  # warm up both
            wrk(target, 3, args.connections, auth=True)
            floor = wrk(floor_url, args.seconds, args.connections, auth=False)
            full = wrk(target, args.seconds, args.connections, auth=True)
            ratio = full["rps"] / floor["rps"] if floor["rps"] else 0.0
            report = {"connections": args.connections, "seconds": args.seconds,
                      "workers": args.workers, "floor": floor, "full_stack": full,
                      "ratio": round(ratio, 3),
                      "goals": {"ratio>=0.60": ratio >= 0.60,
                                "p99<=50ms": (full["p99_ms"] or 1e9) <= 50,
                                "errors==0": full["errors"] == 0}}
            print(json.dumps(report, indent=2))
            return 0
    except Exception as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        for name, _ in procs.procs:
            print(f"--- {name} ---\n{procs.tail(name)}", file=sys.stderr)
        return 1
    finally:
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
