"""Benchmark: bootstrap of 50 lab hosts registered at once through the whole
control plane, against a plain `ansible-playbook` of the same playbook with the
same forks and SSH settings. Goal (issue): ratio A/B <= 1.2.

    python tools/bench_bootstrap.py [--hosts 50] [--order ABBA] [--timeout 600]

One Lab of len(order) x --hosts sshd hosts; each run gets its own group (the
playbook is idempotent, but a host bootstrapped once would make a later run
cheaper). The runs go in --order (ABBA by default, so that whatever drifts over
the benchmark weighs on A and B alike); the ratio is mean(A) / mean(B).

A  `AllInOneStack` (tools/stack.py; SSH confined to 127.0.0.0/8), PUT cluster
   "bench", then every host of group A registered at once (PUT
   /api/v0/host/{addr} from a thread pool, lab key, cluster bench); the clock
   runs from the first PUT until GET /api/v0/hosts shows every host
   `disassociated` or `active` (polled every 0.25 s). Any `failed` host fails
   the benchmark with its status_reason.
B  `ansible-playbook playbooks/investigate.yml -f FORKS` on group B with the
   environment of commissaire/ansible/runner.py `_environment()` (pipelining,
   ControlMaster/ControlPersist, StrictHostKeyChecking against a known_hosts
   file of the lab host keys, explicit gathering...) and per-host variables as
   the investigator passes them (`_cluster_vars` for cluster "bench" on the
   default network, no container manager; the playbook sets commissaire_os
   itself from its facts). Clock: the ansible-playbook process.

Before both, one untimed `ansible-playbook playbooks/facts.yml` against a
spare host warms the page cache for Ansible. The stack is stopped before B runs.

Results (2026-11-29, forks 50, 50 hosts each, order ABBA): A 148.3 s, B 138.6 s,
B 135.1 s, A 139.3 s: mean A 143.8 s / mean B 136.9 s = 1.05 (pairs 1.07 and
1.03); again: A 152.2 s, B 143.3 s, B 143.5 s, A 142.1 s = 1.03. Earlier, with one order per run and the investigator pinning host keys
one host after the other: AB 1.29, BA 1.06; the order alone moved B by 35 s.
At 30 hosts, commissaire.ansible.runner.run_playbook alone took 76.9 s against
76.2 s for plain ansible-playbook: ansible-runner itself adds ~1%.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from commissaire.ansible import runner  # noqa: E402
from tools.lab import Lab, LabHost  # noqa: E402
from tools.stack import AllInOneStack  # noqa: E402

PLAYBOOKS = ROOT / "playbooks"
DONE = ("disassociated", "active")


def run_stack(lab: Lab, hosts: list[LabHost], timeout: float) -> dict[str, Any]:
    stack = AllInOneStack()
    try:
        stack.start()
        session = stack.session()
        base = stack.base_url
        put = session.put(f"{base}/cluster/bench", json={})
        assert put.status_code in (200, 201), put.text
        network = session.get(f"{base}/network/default").json()
        key = lab.private_key_b64
        addresses = [h.address for h in hosts]

        def register(address: str) -> int:
            s = stack.session()
            return s.put(f"{base}/host/{address}",
                         json={"ssh_priv_key": key, "cluster": "bench"}).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
            codes = list(pool.map(register, addresses))
        registered = time.monotonic() - started
        bad = [c for c in codes if c not in (200, 201)]
        if bad:
            raise RuntimeError(f"{len(bad)} registrations failed: {bad[:5]}")
        wanted = set(addresses)
        statuses: dict[str, dict[str, Any]] = {}
        while True:
            page = session.get(f"{base}/hosts", params={"cluster": "bench"}).json()
            statuses = {h["address"]: h for h in page if h["address"] in wanted}
            failed = {a: h.get("status_reason") for a, h in statuses.items()
                      if h["status"] == "failed"}
            if failed:
                raise RuntimeError(f"{len(failed)} host(s) failed: "
                                   + json.dumps(dict(list(failed.items())[:3])))
            if len(statuses) == len(wanted) and all(h["status"] in DONE
                                                    for h in statuses.values()):
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError("timed out: " + json.dumps(
                    {a: h["status"] for a, h in statuses.items()}))
            time.sleep(0.25)
        seconds = time.monotonic() - started
        return {"seconds": round(seconds, 2), "register_seconds": round(registered, 2),
                "statuses": sorted({h["status"] for h in statuses.values()}),
                "network": network}
    except Exception:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)


def cluster_vars(address: str, network: dict[str, Any]) -> dict[str, Any]:
    """What InvestigatorService._cluster_vars gives a host of cluster "bench"
    (network `network`, no container manager)."""
    options = network.get("options") or {}
    hostvars = {"commissaire_bootstrap_ip": address, "commissaire_cluster": "bench",
                "commissaire_network_name": network["name"],
                "commissaire_network_type": network["type"]}
    if network["type"] == "flannel_server":
        hostvars["commissaire_flanneld_server"] = options.get("address", "")
    else:
        hostvars["commissaire_etcd_server_url"] = options.get("etcd_server_url", "")
        hostvars["commissaire_flannel_key"] = options.get("flannel_key", "/atomic.io/network")
    return hostvars


def run_plain(lab: Lab, hosts: list[LabHost], playbook: str, forks: int,
              network: dict[str, Any], timeout: float) -> dict[str, Any]:
    """ansible-playbook with the runner's environment and inventory variables."""
    private = Path(tempfile.mkdtemp(prefix="commissaire-bench-"))
    private.chmod(0o700)
    settings = runner.SSHSettings(forks=forks)
    targets = [runner.Target(address=h.address, private_key="", host_key=h.host_public_key())
               for h in hosts]
    try:
        (private / "known_hosts").write_text("".join(
            runner.known_hosts_line(t.address, t.port, t.host_key) + "\n" for t in targets))
        inventory = {"all": {"hosts": {t.address: {
            "ansible_host": t.address, "ansible_port": t.port, "ansible_user": t.user,
            "ansible_ssh_private_key_file": lab.private_key_path,
            "ansible_python_interpreter": "auto_silent", "ansible_ssh_common_args": "",
            **cluster_vars(t.address, network)} for t in targets}}}
        (private / "inventory.json").write_text(json.dumps(inventory))
        env = {**os.environ, **runner._environment(private, settings)}
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                str(private / "inventory.json"), "-f", str(min(forks, len(targets))),
                str(PLAYBOOKS / playbook)]
        started = time.monotonic()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=private)
        seconds = time.monotonic() - started
        recap = proc.stdout[proc.stdout.rfind("PLAY RECAP"):]
        if proc.returncode != 0:
            raise RuntimeError(f"ansible-playbook exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        return {"seconds": round(seconds, 2), "hosts_ok": recap.count("failed=0")}
    finally:
        runner._stop_control_masters(private, targets)
        shutil.rmtree(private, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--forks", type=int, default=50,
                        help="forks of B (A uses the investigator's setting, default 50)")
    parser.add_argument("--order", default="ABBA",
                        help="runs in this order, each on fresh hosts (A and B at least once)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    order = args.order.upper()
    if set(order) != {"A", "B"}:
        parser.error("--order must name A and B, e.g. ABBA")
    lab = None
    try:
        lab = Lab(reboot_time=2.0)
        t0 = time.monotonic()
        hosts = lab.start_hosts(len(order) * args.hosts + 1)
        setup = time.monotonic() - t0
        spare = hosts[-1:]
        default_network = {"name": "default", "type": "flannel_etcd", "options": {}}
        run_plain(lab, spare, "facts.yml", 1, default_network, args.timeout)  # warm-up
        runs: list[dict[str, Any]] = []
        network = default_network
        for i, step in enumerate(order):
            group = hosts[i * args.hosts:(i + 1) * args.hosts]
            if step == "A":
                result = run_stack(lab, group, args.timeout)
                network = result.pop("network", None) or network
            else:
                result = run_plain(lab, group, "investigate.yml", args.forks, network,
                                   args.timeout)
            runs.append({"run": step, **result})
            print(f"{step}: {result['seconds']} s", file=sys.stderr)
        total = {step: sum(r["seconds"] for r in runs if r["run"] == step) for step in "AB"}
        ratio = total["A"] / total["B"]
        report = {"hosts": args.hosts, "forks": args.forks, "order": order,
                  "lab_setup_seconds": round(setup, 1), "runs": runs,
                  "A_seconds_mean": round(total["A"] / order.count("A"), 2),
                  "B_seconds_mean": round(total["B"] / order.count("B"), 2),
                  "ratio_A_over_B": round(ratio * order.count("B") / order.count("A"), 3),
                  }
        report["goals"] = {"ratio<=1.2": report["ratio_A_over_B"] <= 1.2}
        print(json.dumps(report, indent=2))
        return 0
    except Exception as exc:
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if lab is not None:
            lab.close()


if __name__ == "__main__":
    sys.exit(main())
