"""Rolling operations on lab hosts through the distributed control plane.

Every host really reboots (sshd goes away and returns with a new boot id), so
each health gate is exercised; a monitor samples which hosts are down every
50 ms to check the budget at every instant, and the lab's stand-ins record
every reboot, upgrade and deploy request so "exactly once" is checked on the
hosts themselves, not in our own records.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.support.lab import DownMonitor, reboots
from tests.support.waiting import wait_for
from tools.lab import Lab, LabHost
from tools.stack import DistributedStack, running

pytestmark = pytest.mark.integration

REBOOT = 2.0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(reboot_time=REBOOT) as lab:
        yield lab


@pytest.fixture(scope="module")
def stack() -> Iterator[DistributedStack]:
    with running(DistributedStack(service_config={
        "clusterexec": {"gate-timeout": 20, "lease-ttl": 3},
        "watcher": {"interval": 5}})) as stack:
        yield stack


class Api:
    def __init__(self, stack: DistributedStack) -> None:
        self.session = stack.session()
        self.base = stack.base_url

    def __getattr__(self, method: str) -> Callable[..., requests.Response]:
        call = getattr(self.session, method)
        return lambda path, **kw: call(self.base + path, timeout=30, **kw)


@pytest.fixture(scope="module")
def api(stack: DistributedStack) -> Api:
    return Api(stack)



def cluster_of(api: Api, lab: Lab, name: str, count: int) -> list[LabHost]:
    hosts = lab.start_hosts(count)
    assert api.put(f"/cluster/{name}", json={}).status_code == 201
    for host in hosts:
        response = api.put(f"/host/{host.address}", json={"ssh_priv_key": lab.private_key_b64,
                                                          "cluster": name})
        assert response.status_code == 201, response.text
    for host in hosts:
        up = wait_for(lambda h=host: api.get(f"/host/{h.address}").json()["status"]
                      in ("disassociated", "failed") and api.get(f"/host/{h.address}").json(),
                      180, f"{host.address} bootstrapped")
        assert up["status"] == "disassociated", up["status_reason"]
    return hosts


def finished(api: Api, cluster: str, kind: str, timeout: float = 180) -> dict[str, Any]:
    """The operation once it has ended: its status final and finished_at set (an
    aborted one gets finished_at when its hosts in flight are through)."""
    def ended() -> dict[str, Any] | None:
        op = api.get(f"/cluster/{cluster}/{kind}").json()
        return op if op["status"] != "in_process" and op.get("finished_at") else None
    return wait_for(ended, timeout, f"{kind} of {cluster} ended")


def test_a_restart_reboots_every_host_once_within_budget(api: Api, lab: Lab) -> None:
    hosts = cluster_of(api, lab, "rolling", 4)
    boots = {h.address: h.boot_id() for h in hosts}
    started = time.time()
    monitor = DownMonitor(hosts)
    response = api.put("/cluster/rolling/restart", json={"max_unavailable": 2})
    assert response.status_code == 201, response.text
    assert api.put("/cluster/rolling/restart", json={}).status_code == 409
    op = finished(api, "rolling", "restart")
    monitor.stop()
    assert op["status"] == "finished", op
    assert sorted(op["restarted"]) == sorted(boots)
    assert op["finished_at"] and op["started_at"]
    assert all(h["state"] == "done" for h in op["hosts"].values()), op["hosts"]
    assert monitor.ever_down == set(boots), "every host went down"
    assert 1 <= monitor.max_down <= 2, monitor.max_down
    for host in hosts:
        assert len(reboots(host, started)) == 1, host.requests()
        assert host.boot_id() != boots[host.address]


def test_a_deploy_boots_the_requested_version(api: Api, lab: Lab) -> None:
    hosts = cluster_of(api, lab, "deployed", 2)
    started = time.time()
    assert api.put("/cluster/deployed/deploy", json={"version": "7.1"}).status_code == 201
    op = finished(api, "deployed", "deploy")
    assert op["status"] == "finished", op
    for host in hosts:
        deploys = [r for r in host.requests() if r["time"] >= started
                   and r["cmd"] == "rpm-ostree" and r["argv"][:1] == ["deploy"]]
        assert [r["argv"] for r in deploys] == [["deploy", "7.1"]]
        assert host.read_file("/var/lib/lab/version").strip() == "7.1"


def test_an_upgrade_upgrades_then_restarts_each_host(api: Api, lab: Lab) -> None:
    hosts = cluster_of(api, lab, "upgraded", 2)
    started = time.time()
    assert api.put("/cluster/upgraded/upgrade", json={}).status_code == 201
    op = finished(api, "upgraded", "upgrade")
    assert op["status"] == "finished", op
    assert sorted(op["upgraded"]) == sorted(h.address for h in hosts)
    for host in hosts:
        upgrades = [r for r in host.requests() if r["time"] >= started
                    and r["cmd"] == "rpm-ostree" and r["argv"][:1] == ["upgrade"]]
        assert [r["argv"] for r in upgrades] == [["upgrade"]]
        assert len(reboots(host, started)) == 1


def test_a_host_that_never_comes_back_fails_the_operation(api: Api, lab: Lab) -> None:
    hosts = cluster_of(api, lab, "broken", 3)
    lost = hosts[0]

    def keep_down() -> None:  # power the host off for good once its reboot began
        deadline = time.monotonic() + 120
        while lost.is_up() and time.monotonic() < deadline:
            time.sleep(0.02)
        lost.stop()

    killer = threading.Thread(target=keep_down, daemon=True)
    killer.start()
    assert api.put("/cluster/broken/restart", json={"max_unavailable": 1}).status_code == 201
    op = finished(api, "broken", "restart")
    killer.join()
    assert op["status"] == "failed", op
    assert op["hosts"][lost.address]["state"] == "failed"
    assert op["hosts"][lost.address]["reason"]
    # Stop at the first failure (the default policy): no other host was touched after it.
    others = [op["hosts"][h.address]["state"] for h in hosts[1:]]
    assert "in_process" not in others
    lost.start()


def test_abort_stops_starting_hosts(api: Api, lab: Lab) -> None:
    hosts = cluster_of(api, lab, "aborted", 4)
    assert api.put("/cluster/aborted/restart", json={"max_unavailable": 1}).status_code == 201
    wait_for(lambda: any(h["state"] != "pending" for h in
                         api.get("/cluster/aborted/restart").json()["hosts"].values()),
             60, "first host started")
    assert api.delete("/cluster/aborted/restart").status_code == 200
    assert api.get("/cluster/aborted/restart").json()["status"] == "aborted"
    op = finished(api, "aborted", "restart")
    assert op["status"] == "aborted", op
    states = [op["hosts"][h.address]["state"] for h in hosts]
    assert "skipped" in states and "pending" not in states, states
    assert "in_process" not in states  # the host in flight finished
    assert all(h.is_up() for h in hosts)


def test_a_killed_clusterexec_resumes_and_acts_once(api: Api, lab: Lab,
                                                    stack: DistributedStack) -> None:
    hosts = cluster_of(api, lab, "resumed", 4)
    boots = {h.address: h.boot_id() for h in hosts}
    started = time.time()
    monitor = DownMonitor(hosts)
    assert api.put("/cluster/resumed/restart", json={"max_unavailable": 2}).status_code == 201
    wait_for(lambda: sum(h["state"] == "done" for h in
                         api.get("/cluster/resumed/restart").json()["hosts"].values()) >= 1
             or None, 120, "one host done")
    stack.procs.kill("clusterexec")
    time.sleep(1)
    stack.start_service("clusterexec")
    op = finished(api, "resumed", "restart", timeout=240)
    monitor.stop()
    assert op["status"] == "finished", op
    assert monitor.max_down <= 2, monitor.max_down
    for host in hosts:
        assert len(reboots(host, started)) == 1, (host.address, host.requests())
        assert host.boot_id() != boots[host.address]
