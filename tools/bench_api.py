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
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.stack import DistributedStack, free_port, wait_http  # noqa: E402


def wrk(url: str, seconds: int, connections: int, auth: tuple[str, str] | None
        ) -> dict[str, Any]:
    header = ["-H", "Authorization: Basic " + base64.b64encode(
        f"{auth[0]}:{auth[1]}".encode()).decode()] if auth else []
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
    stack = DistributedStack(services=["storage"], workers=args.workers, bcrypt_rounds=12)
    try:
        stack.start()
        procs = stack.procs
        floor_port = free_port()
        procs.start("floor-echo", [sys.executable, "-m", "tools.bench.floor", "echo",
                                   "--bus-uri", stack.redis.url])
        procs.start("floor", [sys.executable, "-m", "tools.bench.floor", "serve",
                              "--bus-uri", stack.redis.url, "--port", str(floor_port),
                              "--workers", str(args.workers), "--threads", str(args.threads)])
        wait_http(f"http://127.0.0.1:{floor_port}/floor/x", None, 60)
        base = stack.base_url
        session = stack.session()
        assert session.put(f"{base}/cluster/bench", json={}).status_code == 201
        key_b64 = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\n").decode()
        for i in range(args.hosts):
            # Documentation addresses (RFC 5737): stored only; no service here acts on hosts.
            address = f"198.51.100.{i % 250 + 1}" if i < 250 else f"203.0.113.{i % 250 + 1}"
            session.put(f"{base}/host/{address}", json={"ssh_priv_key": key_b64,
                                                        "cluster": "bench"})
        target = f"{base}/host/198.51.100.{min(args.hosts, 250) // 2 + 1}"
        assert session.get(target).status_code == 200, session.get(target).text
        floor_url = f"http://127.0.0.1:{floor_port}/floor/198.51.100.1"
        auth = (stack.auth[0], stack.auth[1])
        wrk(floor_url, 3, args.connections, None)  # warm up both
        wrk(target, 3, args.connections, auth)
        floor = wrk(floor_url, args.seconds, args.connections, None)
        full = wrk(target, args.seconds, args.connections, auth)
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
        print(stack.logs(), file=sys.stderr)
        return 1
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
