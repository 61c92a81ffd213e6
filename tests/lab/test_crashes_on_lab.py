"""A rolling restart survives a kill -9 of any control-plane process.

Each test starts a restart of a 4-host lab cluster with max_unavailable 2, kills
one process (the server, a service, Redis, which comes back empty, or etcd, which
comes back on its data; or the whole all-in-one) at a random moment of it and
starts it again a second later. The
operation must still finish with every host done, each host rebooted exactly
once (the lab's reboot stand-in records every request), and never more than 2
hosts down at once (sampled every 50 ms). The seed of the random moments is
printed on failure; CRASH_SEED=<n> replays it.
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator

import pytest

from tests.lab.test_operations_on_lab import Api, cluster_of, finished
from tests.support.lab import DownMonitor, reboots
from tools.lab import Lab, LabHost
from tools.stack import AllInOneStack, DistributedStack, running

pytestmark = pytest.mark.integration

REBOOT = 2.0
BUDGET = 2
SEED = int(os.environ.get("CRASH_SEED") or random.randrange(1 << 30))
PROCESSES = ["storage", "server", "clusterexec", "investigator", "watcher", "containermgr",
             "redis", "etcd"]
SERVICE_CONFIG = {"clusterexec": {"gate-timeout": 30, "lease-ttl": 3},
                  "watcher": {"interval": 2}}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(reboot_time=REBOOT) as lab:
        yield lab


@pytest.fixture(scope="module")
def stack() -> Iterator[DistributedStack]:
    with running(DistributedStack(service_config=SERVICE_CONFIG)) as stack:
        yield stack


@pytest.fixture(scope="module")
def crew(stack: DistributedStack, lab: Lab) -> list[LabHost]:
    return cluster_of(Api(stack), lab, "crashes", 4)


def restart_through_a_crash(api: Api, hosts: list[LabHost], cluster: str,
                            crash: Callable[[], None], rng: random.Random,
                            logs: Callable[[], str] = str) -> None:
    boots = {h.address: h.boot_id() for h in hosts}
    started = time.time()
    monitor = DownMonitor(hosts)
    at = rng.uniform(0.2, 6.0)  # the operation takes about 8 s
    response = api.put(f"/cluster/{cluster}/restart", json={"max_unavailable": BUDGET})
    assert response.status_code == 201, response.text
    time.sleep(at)
    crash()
    where = f"(CRASH_SEED={SEED}, killed {at:.2f} s in)"
    op = finished(api, cluster, "restart", timeout=240)
    monitor.stop()
    # on failure: each host's state and reason, and what the services logged
    assert op["status"] == "finished", (where, op.get("hosts"), logs()[-6000:])
    assert {a: h["state"] for a, h in op["hosts"].items()} == {a: "done" for a in boots}, where
    assert monitor.max_down <= BUDGET, (where, monitor.max_down)
    for host in hosts:
        assert len(reboots(host, started)) == 1, (where, host.address, host.requests())
        assert host.boot_id() != boots[host.address], where


@pytest.mark.parametrize("process", PROCESSES)
def test_a_restart_survives_a_killed_process(process: str, stack: DistributedStack,
                                             crew: list[LabHost]) -> None:
    rng = random.Random(f"{SEED}-{process}")
    restart_through_a_crash(Api(stack), crew, "crashes",
                            lambda: stack.crash(process), rng, stack.logs)


def test_a_restart_survives_a_killed_allinone(lab: Lab) -> None:
    with running(AllInOneStack(service_config=SERVICE_CONFIG)) as stack:
        api = Api(stack)  # type: ignore[arg-type]
        hosts = cluster_of(api, lab, "allinone", 4)
        rng = random.Random(f"{SEED}-allinone")
        # The Api's base URL stays valid: the restarted process keeps its port.
        restart_through_a_crash(api, hosts, "allinone", stack.crash, rng, stack.logs)
