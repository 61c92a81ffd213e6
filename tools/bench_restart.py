"""Benchmark: rolling restart of 20 lab hosts through the whole control plane
with max_unavailable 5, against the reboot-only ideal. Goal (issue): wall <=
1.3 x ideal, where ideal = ceil(hosts / max_unavailable) x reboot time.

    python tools/bench_restart.py [--hosts 20] [--max-unavailable 5] [--reboot-time 10]

A Lab (tools/lab) of --hosts sshd hosts whose reboot takes --reboot-time s, and
an `AllInOneStack` (tools/stack.py; SSH confined to 127.0.0.0/8). Cluster
"bench" is created, every host registered into it (lab key) and bootstrapped
(status "disassociated"; a "failed" host fails the benchmark with its
status_reason). Then PUT /api/v0/cluster/bench/restart {"max_unavailable": N}
and GET it every 0.1 s until its status is no longer "in_process"; the wall
clock runs from the PUT to that GET. Meanwhile a monitor thread samples every
host's up state every 50 ms (what `is_up()` checks, with one read of
/proc/net/tcp per sample: see Monitor) and keeps the most hosts down at once.

Checked afterwards: every host got exactly one reboot request (the lab's
stand-ins record `reboot` / `systemctl reboot`) and has a new boot id, and
every host's state in the operation is "done".

The report also breaks each host's time down (from the operation's per-host
events, the stand-in's request time and the monitor's down/up times):
  to_request     started -> reboot request (pre-probe, store update,
                 ansible-playbook restart.yml up to its task, its `sleep 1`)
  request_to_up  reboot request -> sshd listens again (the lab reboot time)
  gate           up -> "healthy" (health gate: SSH probe every poll interval)
  act            started -> "restart issued" (the whole ansible-playbook run)
  slot_gaps      a host done -> the next host started (executor scheduling)
After the run, `action_cost` times restart.yml alone (no reboot: the
operation's marker) for one host and for max_unavailable hosts at once, and the
gate's SSH probe.

Results on this 2-core machine (2026-11-29, defaults, four runs): wall 49.3,
49.4, 50.3 and 51.4 s against an ideal of 40 s, ratio 1.23-1.29; max down 5; all 20
done, one reboot request and one new boot each. Per host: 1.7-1.9 s from start
to the reboot request (restart.yml, a raw command, 5 hosts in one run), reboot
10.2 s, gate 0.1-0.2 s, next host started 0.1 s after one is done. Before the
raw command and the 0.1 s delay (a shell module and `sleep 1`): 58-60 s, 1.46-1.51.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import resource
import shutil
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.lab import Lab, LabHost  # noqa: E402
from tools.stack import AllInOneStack  # noqa: E402

REBOOT_CMDS = ("reboot", "systemctl reboot")


def _epoch(iso: str | None) -> float | None:
    """The store's timestamps (ISO 8601, UTC, no suffix) as epoch seconds."""
    if not iso:
        return None
    return dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp()


def is_reboot(request: dict[str, Any]) -> bool:
    cmd = request.get("cmd", "")
    argv = [str(a) for a in request.get("argv", [])]
    if cmd == "reboot":
        return True
    if cmd == "systemctl":
        return "reboot" in argv
    if cmd == "shutdown":
        return "-r" in argv
    return " ".join([cmd, *argv]).strip() in REBOOT_CMDS


def _listen_needle(address: str, port: int) -> str:
    """How /proc/net/tcp shows a socket listening on address:port (the kernel prints
    the address as a host-order u32)."""
    raw = int.from_bytes(socket.inet_aton(address), sys.byteorder)
    return f"{raw:08X}:{port:04X} 00000000:0000 0A"


class Monitor(threading.Thread):
    """Samples every host's is_up() every `interval` s; keeps the most down at once
    and each host's down/up transitions (epoch seconds).

    `LabHost.is_up()` parses all of /proc/net/tcp in Python for each host (~85 ms
    here with ~4,000 sockets on the machine), i.e. ~1.7 s per sample of 20 hosts,
    holding the GIL the lab's supervisor thread (which powers hosts back on) needs.
    So a sample reads /proc/net/tcp once and asks, per host, the same two things
    is_up() does: is its boot running, and does its sshd listen."""

    def __init__(self, hosts: list[LabHost], interval: float = 0.05) -> None:
        super().__init__(name="bench-monitor", daemon=True)
        self.hosts = hosts
        self.interval = interval
        self.needles = {h.address: _listen_needle(h.address, h.port) for h in hosts}
        self.stopped = threading.Event()
        self.max_down = 0
        self.max_down_at = 0.0
        self.samples = 0
        self.gaps: list[float] = []
        self.transitions: dict[str, list[tuple[float, bool]]] = {h.address: [] for h in hosts}
        self._last: dict[str, bool] = {}

    def up(self) -> dict[str, bool]:
        with open("/proc/net/tcp") as f:
            table = f.read()
        return {h.address: h._booted() and self.needles[h.address] in table
                for h in self.hosts}

    def run(self) -> None:
        previous = 0.0
        while not self.stopped.is_set():
            now = time.time()
            if previous:
                self.gaps.append(now - previous)
            previous = now
            ups = self.up()
            for address, up in ups.items():
                if self._last.get(address, True) != up:
                    self.transitions[address].append((now, up))
                self._last[address] = up
            down = sum(1 for up in ups.values() if not up)
            self.samples += 1
            if down > self.max_down:
                self.max_down, self.max_down_at = down, now
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


REQUEST_FILE = "/var/lib/lab/reboot-requested"


class BootCounter:
    """Counts every boot the lab gives each host (wraps the instance's _spawn_boot),
    and optionally closes a lab race that reboots a host twice for one request.

    The race (tools/lab, not the control plane): the lab's supervisor thread looks
    every 0.1 s for /var/lib/lab/reboot-requested in a booted host, and the file is
    removed only by the host's init (tools/lab/standins/init), after BOOT_SCRIPT's
    dozen mounts. On a loaded machine that takes longer than a tick, so the
    supervisor sees the old request in the new boot and reboots the host again:
    one more full reboot_time (seen here: hosts down 20 s and 31 s for a 10 s
    reboot, with a single reboot request). With `consume`, the request file is
    removed as soon as the supervisor has powered the host off for it (the host is
    down then, nothing else can write it), which is what init does a moment later."""

    def __init__(self, hosts: list[LabHost], consume: bool) -> None:
        self.boots: dict[str, list[float]] = {h.address: [] for h in hosts}
        self.consumed = 0
        for host in hosts:
            self._wrap(host, consume)

    def _wrap(self, host: LabHost, consume: bool) -> None:
        spawn, tick = host._spawn_boot, host._tick

        def spawn_boot() -> None:
            self.boots[host.address].append(time.time())
            spawn()

        def supervise(now: float) -> None:
            was_up = host._booted()
            tick(now)
            if consume and was_up and not host._booted() and host._boot_at is not None:
                try:
                    os.remove(host._path(REQUEST_FILE))
                    self.consumed += 1
                except FileNotFoundError:
                    pass

        host._spawn_boot = spawn_boot  # type: ignore[method-assign]
        host._tick = supervise  # type: ignore[method-assign]

    def since(self, t: float) -> dict[str, int]:
        return {a: sum(1 for b in times if b >= t) for a, times in self.boots.items()}


def register(session: Any, base: str, lab: Lab, hosts: list[LabHost], timeout: float
             ) -> dict[str, str]:
    key = lab.private_key_b64

    def put(host: LabHost) -> None:
        resp = session.put(f"{base}/host/{host.address}",
                           json={"ssh_priv_key": key, "cluster": "bench"}, timeout=30)
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"PUT host {host.address}: {resp.status_code} {resp.text}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(put, hosts))
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = {}
        for host in hosts:
            body = session.get(f"{base}/host/{host.address}", timeout=30).json()
            statuses[host.address] = body.get("status", "")
            if body.get("status") == "failed":
                raise RuntimeError(f"host {host.address} failed to bootstrap: "
                                   f"{body.get('status_reason')}")
        if all(s == "disassociated" for s in statuses.values()):
            return statuses
        time.sleep(0.5)
    raise RuntimeError(f"hosts not bootstrapped within {timeout:g} s: {statuses}")


def action_cost(lab: Lab, hosts: list[LabHost], op: dict[str, Any], width: int
                ) -> dict[str, Any]:
    """After the restart: what one host's action costs without its reboot. The same
    playbook through the same runner as the executor (restart.yml, one
    ansible-playbook per host, the operation's id, so its marker makes it a no-op
    on the host), once for one host and then for `width` hosts at once (the
    executor's wave); and the health gate's SSH probe (asyncssh, boot id)."""
    import asyncio

    from commissaire.ansible import runner
    from commissaire.reach import Reach
    from commissaire.ssh import ProbeTarget, probe

    lab_only = Reach.from_setting(["127.0.0.0/8"])
    key = Path(lab.private_key_path).read_text()
    op_id = re.sub(r"[^A-Za-z0-9_.-]", "_", f"restart-bench-{op.get('started_at') or ''}")
    targets = [runner.Target(address=h.address, private_key=key, host_key=h.host_public_key(),
                             hostvars={"commissaire_os": "lab"}) for h in hosts[:width]]

    def one(target: runner.Target) -> float:
        t = time.monotonic()
        result = runner.run_playbook("restart.yml", [target],
                                     extravars={"commissaire_operation_id": op_id},
                                     settings=runner.SSHSettings(reach=lab_only))
        if result.hosts[target.address].outcome != runner.OK:
            raise RuntimeError(f"restart.yml on {target.address}: "
                               f"{result.hosts[target.address].message}")
        return time.monotonic() - t

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    single = [one(targets[0]) for _ in range(2)]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / len(single)
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=width) as pool:
        parallel = list(pool.map(one, targets))
    wave = time.monotonic() - t
    probes = []
    host = hosts[0]
    for _ in range(5):
        t = time.monotonic()
        result = asyncio.run(probe(ProbeTarget(host.address, key, host_key=host.host_public_key()),
                                   timeout=10, reach=lab_only))
        probes.append(time.monotonic() - t)
        if not result.ok:
            raise RuntimeError(f"probe {host.address}: {result.message}")
    return {"playbook_one_host_s": [round(x, 2) for x in single],
            "playbook_one_host_child_cpu_s": round(cpu, 2),
            "cpus": os.cpu_count(),
            f"playbook_{width}_at_once_s": {"each": [round(x, 2) for x in parallel],
                                            "wall": round(wave, 2)},
            "probe_s": {"mean": round(statistics.mean(probes), 3),
                        "max": round(max(probes), 3)}}


def breakdown(op: dict[str, Any], hosts: list[LabHost], reboots: dict[str, list[float]],
              monitor: Monitor, t_put: float) -> dict[str, Any]:
    """Where each host's time went, and the scheduling gaps between hosts."""
    per_host: dict[str, dict[str, float | None]] = {}
    for host in hosts:
        detail = op["hosts"].get(host.address, {})
        events = {e["event"]: _epoch(e["at"]) for e in detail.get("events", [])}
        started = _epoch(detail.get("started_at")) or events.get("started")
        issued = events.get("restart issued")
        healthy = events.get("healthy") or _epoch(detail.get("finished_at"))
        reboot_at = reboots.get(host.address, [None])[0] if reboots.get(host.address) else None
        trans = monitor.transitions.get(host.address, [])
        down_at = next((t for t, up in trans if not up), None)
        up_at = next((t for t, up in trans if up and down_at and t > down_at), None)

        def span(a: float | None, b: float | None) -> float | None:
            return round(b - a, 3) if a is not None and b is not None else None

        per_host[host.address] = {
            "start_rel": span(t_put, started), "done_rel": span(t_put, healthy),
            "to_request": span(started, reboot_at), "request_to_up": span(reboot_at, up_at),
            "gate": span(up_at, healthy), "total": span(started, healthy),
            "act": span(started, issued), "request_to_down": span(reboot_at, down_at),
            "down": span(down_at, up_at)}
    # Scheduling gap: each start after the first wave, against the latest "done"
    # before it (the slot it took).
    starts = sorted(v["start_rel"] for v in per_host.values() if v["start_rel"] is not None)
    dones = sorted(v["done_rel"] for v in per_host.values() if v["done_rel"] is not None)
    gaps = []
    for s in starts:
        before = [d for d in dones if d <= s]
        if before:
            gaps.append(round(s - before[-1], 3))

    def stats(name: str) -> dict[str, float] | None:
        values = [v[name] for v in per_host.values() if v[name] is not None]
        if not values:
            return None
        return {"mean": round(statistics.mean(values), 3), "min": round(min(values), 3),
                "max": round(max(values), 3)}

    return {"phases": {name: stats(name) for name in
                       ("to_request", "request_to_up", "gate", "total", "act",
                        "request_to_down", "down")},
            "first_start_rel": starts[0] if starts else None,
            "slot_gaps": {"count": len(gaps),
                          "mean": round(statistics.mean(gaps), 3) if gaps else None,
                          "max": max(gaps) if gaps else None},
            "per_host": per_host}


def check_reboots(hosts: list[LabHost], reboots_before: dict[str, int],
                  boot_before: dict[str, str]) -> tuple[dict[str, list[float]], list[str]]:
    """After the restart: each host's reboot request times since `reboots_before`,
    and what is wrong (not exactly one request, down at the end, same boot id)."""
    reboots: dict[str, list[float]] = {}
    problems: list[str] = []
    for host in hosts:
        reqs = [r for r in host.requests() if is_reboot(r)]
        new = reqs[reboots_before[host.address]:]
        reboots[host.address] = [float(r["time"]) for r in new]
        if len(new) != 1:
            problems.append(f"{host.address}: {len(new)} reboot request(s)")
        if not host.is_up():
            problems.append(f"{host.address}: down at the end")
        elif host.boot_id() == boot_before[host.address]:
            problems.append(f"{host.address}: same boot id")
    return reboots, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--max-unavailable", type=int, default=5)
    parser.add_argument("--reboot-time", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="for bootstrap, and again for the restart")
    parser.add_argument("--details", action="store_true", help="per-host time breakdown")
    parser.add_argument("--no-action-cost", dest="action_cost", action="store_false",
                        help="skip timing restart.yml and the probe alone after the run")
    parser.add_argument("--no-lab-race-workaround", dest="consume", action="store_false",
                        help="leave the lab's double-reboot race (see BootCounter) open")
    args = parser.parse_args()

    lab: Lab | None = None
    stack: AllInOneStack | None = None
    monitor: Monitor | None = None
    try:
        lab = Lab(reboot_time=args.reboot_time)
        hosts = lab.start_hosts(args.hosts)
        stack = AllInOneStack()
        stack.start()
        session = stack.session()
        base = stack.base_url
        resp = session.put(f"{base}/cluster/bench", json={}, timeout=30)
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"PUT cluster: {resp.status_code} {resp.text}")
        t0 = time.monotonic()
        register(session, base, lab, hosts, args.timeout)
        bootstrap_s = time.monotonic() - t0
        boot_before = {h.address: h.boot_id() for h in hosts}
        reboots_before = {h.address: sum(1 for r in h.requests() if is_reboot(r)) for h in hosts}

        load_before = [round(x, 2) for x in os.getloadavg()]
        counter = BootCounter(hosts, consume=args.consume)
        monitor = Monitor(hosts)
        monitor.start()
        url = f"{base}/cluster/bench/restart"
        t_put_wall = time.time()
        t_put = time.monotonic()
        resp = session.put(url, json={"max_unavailable": args.max_unavailable}, timeout=30)
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"PUT restart: {resp.status_code} {resp.text}")
        op: dict[str, Any] = resp.json()
        deadline = t_put + args.timeout
        while time.monotonic() < deadline:
            op = session.get(url, timeout=30).json()
            if op.get("status") != "in_process":
                break
            time.sleep(0.1)
        wall = time.monotonic() - t_put
        time.sleep(0.2)  # one more sample or so after the end
        monitor.stop()

        reboots, problems = check_reboots(hosts, reboots_before, boot_before)

        if args.action_cost:
            cost = action_cost(lab, hosts, op, args.max_unavailable)
            for host in hosts:  # the marker must have kept these runs from rebooting
                n = sum(1 for r in host.requests() if is_reboot(r)) - reboots_before[host.address]
                if n != 1:
                    problems.append(f"{host.address}: {n} reboot request(s) after action_cost")
        boots = counter.since(t_put_wall)
        extra_boots = {a: n - 1 for a, n in boots.items() if n != 1}
        batches = math.ceil(args.hosts / args.max_unavailable)
        ideal = batches * args.reboot_time
        ratio = wall / ideal
        states = {a: d.get("state") for a, d in sorted(op.get("hosts", {}).items())}
        all_done = (len(states) == args.hosts and all(s == "done" for s in states.values())
                    and op.get("status") == "finished")
        detail = breakdown(op, hosts, reboots, monitor, t_put_wall)
        report: dict[str, Any] = {
            "hosts": args.hosts, "max_unavailable": args.max_unavailable,
            "reboot_time": args.reboot_time, "bootstrap_s": round(bootstrap_s, 2),
            "wall_s": round(wall, 2), "ideal_s": ideal, "batches": batches,
            "ratio": round(ratio, 3), "max_down_seen": monitor.max_down,
            "monitor_samples": monitor.samples,
            "monitor_interval_s": {"mean": round(statistics.mean(monitor.gaps), 3),
                                   "max": round(max(monitor.gaps), 3)} if monitor.gaps else None,
            "loadavg_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
            "status": op.get("status"), "reason": op.get("reason", ""),
            "states": states, "problems": problems,
            "lab_race_workaround": args.consume, "lab_requests_consumed": counter.consumed,
            "lab_extra_boots": extra_boots,
            "action_cost": cost if args.action_cost else None,
            "breakdown": {k: v for k, v in detail.items()
                          if k != "per_host" or args.details},
            "goals": {"ratio<=1.3": ratio <= 1.3,
                      f"max_down<={args.max_unavailable}":
                          monitor.max_down <= args.max_unavailable,
                      "all_done": all_done and not problems}}
        print(json.dumps(report, indent=2))
        return 0 if all(report["goals"].values()) else 1
    except Exception as exc:
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if stack is not None:
            print(stack.logs(), file=sys.stderr)
        return 2
    finally:
        if monitor is not None and monitor.is_alive():
            monitor.stop()
        if stack is not None:
            stack.stop()
            shutil.rmtree(stack.workdir, ignore_errors=True)
        if lab is not None:
            lab.close()


if __name__ == "__main__":
    sys.exit(main())
