"""Rolling operations against a simulated fleet (Ansible and the SSH probe replaced
by a model of hosts that reboot); the real thing runs on lab hosts in tests/lab."""
from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Any

import pytest

from commissaire.ansible import runner
from commissaire.ssh import REACHABLE, UNREACHABLE, ProbeResult
from commissaire.storage.sqlite import SqliteStoreHandler
from commissaire_service.clusterexec import executor as executor_module
from commissaire_service.clusterexec.executor import Settings
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DirectBus, HandlerSet, ReversibleBox

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPARE6ac8xw4DRZIZbTl2vPviLudsVLMZ69Kgp+KFyqJ"


class Fleet:
    """Hosts that go down when told to restart and come back with a new boot id."""

    def __init__(self, reboot_seconds: float = 0.2) -> None:
        self.reboot_seconds = reboot_seconds
        self.boot = {}
        self.down_until: dict[str, float] = {}
        self.dead: set[str] = set()
        self.markers: set[tuple[str, str]] = set()
        self.actions: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.max_down = 0
        self.drop_connection: dict[str, bool] = {}  # address -> was the action done first?

    def add(self, address: str) -> None:
        self.boot[address] = uuid.uuid4().hex

    def is_down(self, address: str) -> bool:
        if address in self.dead:
            return True
        until = self.down_until.get(address)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self.down_until[address]
            self.boot[address] = uuid.uuid4().hex
            return False
        return True

    def run_playbook(self, playbook: str, targets: list[runner.Target], **kw: Any
                     ) -> runner.RunResult:
        results = {}
        for t in targets:
            marker = (t.address, kw["extravars"]["commissaire_operation_id"])
            with self.lock:
                if self.is_down(t.address):
                    results[t.address] = runner.HostResult(runner.UNREACHABLE, "down")
                    continue
                if self.drop_connection.get(t.address) is False:
                    del self.drop_connection[t.address]
                    results[t.address] = runner.HostResult(runner.UNREACHABLE, "dropped")
                    continue
                if marker not in self.markers:  # the playbook's once-per-operation marker
                    self.markers.add(marker)
                    self.actions.append((t.address, playbook))
                    self.down_until[t.address] = time.monotonic() + self.reboot_seconds
                    self.max_down = max(self.max_down, len(self.down_until))
            dropped = self.drop_connection.pop(t.address, None) is not None
            results[t.address] = (runner.HostResult(runner.UNREACHABLE, "dropped") if dropped
                                  else runner.HostResult(runner.OK))
        return runner.RunResult(results, "successful")

    async def probe(self, target: Any, timeout: float = 10, command: str | None = None,
                    kex_algorithms: str = "", reach: Any = None) -> ProbeResult:
        with self.lock:
            if self.is_down(target.address):
                return ProbeResult(UNREACHABLE, f"cannot reach {target.address}")
            if command and command.startswith("test -e "):  # the restart marker
                issued = any(a == target.address and f"/{op_id}.restart" in command
                             for a, op_id in self.markers)
                return ProbeResult(REACHABLE, output="issued" if issued else "missing")
            return ProbeResult(REACHABLE, output=self.boot[target.address])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path):  # type: ignore[no-untyped-def]
    bus = DirectBus()
    store = SqliteStoreHandler(path=str(tmp_path / "db.sqlite"))
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    fleet = Fleet()
    monkeypatch.setattr(executor_module.runner, "run_playbook", fleet.run_playbook)
    monkeypatch.setattr(executor_module, "probe", fleet.probe)
    add_cluster(storage, fleet, "c1", [f"127.0.3.{i}" for i in range(1, 11)])
    return bus, storage, fleet


def add_cluster(storage: StorageService, fleet: Fleet, name: str, addresses: list[str]) -> None:
    """A cluster of bootstrapped hosts that the fleet model knows."""
    storage.create("Cluster", {"name": name})
    for address in addresses:
        storage.create_host({"address": address}, {"address": address, "remote_user": "root",
                                                   "ssh_priv_key": base64.b64encode(b"k").decode()},
                            name)
        storage.update_host(address, {"status": "disassociated", "bootstrapped": True,
                                      "os": "fedora", "ssh_host_key": HOST_KEY})
        fleet.add(address)


def wait_done(storage: StorageService, kind: str = "ClusterRestart", seconds: float = 30,
              cluster: str = "c1") -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        op = storage.get_operation(kind, cluster)
        if op["status"] != "in_process" and not op["in_process"]:
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation still running: {op}")


def settings() -> Settings:
    return Settings(gate_timeout=3, poll=0.02)


def test_restart_respects_the_budget_and_acts_once_per_host(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    bus.services["clusterexec"] = svc
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {"max_unavailable": 3}})
    assert svc.try_run("ClusterRestart", "c1")
    op = wait_done(storage)
    assert op["status"] == "finished", op
    assert sorted(op["restarted"]) == sorted(fleet.boot)
    assert sorted(a for a, _ in fleet.actions) == sorted(fleet.boot)  # each exactly once
    assert 1 <= fleet.max_down <= 3
    assert all(h["events"][-1]["event"] == "healthy" for h in op["hosts"].values())


def test_a_dropped_connection_after_the_restart_is_judged_by_the_gate(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    fleet.drop_connection["127.0.3.1"] = True  # restarted, but the result never came back
    fleet.drop_connection["127.0.3.2"] = False  # dropped before the restart command ran
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {
        "max_unavailable": 2, "failure_tolerance": 1}})
    svc.try_run("ClusterRestart", "c1")
    op = wait_done(storage)
    issued, never = op["hosts"]["127.0.3.1"], op["hosts"]["127.0.3.2"]
    assert issued["state"] == "done", issued
    assert any("may have been issued" in e["event"] for e in issued["events"])
    assert never["state"] == "failed"
    assert "was not issued" in never["reason"]  # at once, not after the gate timeout
    assert never["events"][-1]["at"] and len(fleet.actions) == 9
    assert op["status"] == "finished"


def test_a_host_that_never_comes_back_fails_the_operation(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    fleet.reboot_seconds = 60  # never within the gate timeout
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {"max_unavailable": 1}})
    svc.try_run("ClusterRestart", "c1")
    op = wait_done(storage, seconds=20)
    assert op["status"] == "failed"
    states = [h["state"] for h in op["hosts"].values()]
    assert states.count("failed") == 1 and states.count("skipped") == 9
    failed = next(h for h in op["hosts"].values() if h["state"] == "failed")
    assert "health gate timed out" in failed["reason"]
    assert len(fleet.actions) == 1


def test_unhealthy_hosts_count_against_the_budget(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    storage.update_host("127.0.3.10", {"status": "failed"})
    fleet.dead.add("127.0.3.10")
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {
        "max_unavailable": 2, "failure_tolerance": 1}})
    svc.try_run("ClusterRestart", "c1")
    op = wait_done(storage)
    assert op["status"] == "finished"
    assert fleet.max_down == 1  # one slot went to the host that was already down
    assert op["hosts"]["127.0.3.10"]["state"] == "failed"


def test_abort_stops_new_hosts(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    fleet.reboot_seconds = 0.5
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {"max_unavailable": 2}})
    svc.try_run("ClusterRestart", "c1")
    time.sleep(0.3)
    storage.abort_operation("ClusterRestart", "c1")
    op = wait_done(storage)
    assert op["status"] == "aborted"
    states = [h["state"] for h in op["hosts"].values()]
    assert states.count("skipped") >= 6
    assert "in_process" not in states and "pending" not in states
    assert len(fleet.actions) == states.count("done")


def test_a_dead_executor_is_resumed_and_no_host_is_acted_on_twice(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    fleet.reboot_seconds = 0.3
    first = ClusterExecService(bus, lease_ttl=2, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {"max_unavailable": 3}})
    first.try_run("ClusterRestart", "c1")
    time.sleep(0.5)
    # The first copy "dies": its lease is revoked and its threads see the lock lost.
    op = storage.get_operation("ClusterRestart", "c1")
    assert op["status"] == "in_process"
    lock = storage.repo.get("OperationLock", "ClusterRestart.c1")
    storage.release_lock("ClusterRestart.c1", lock.lease)
    second = ClusterExecService(bus, lease_ttl=2, settings=settings(), start=False)
    deadline = time.monotonic() + 10
    while not second.try_run("ClusterRestart", "c1") and time.monotonic() < deadline:
        time.sleep(0.05)
    op = wait_done(storage)
    assert op["status"] == "finished", {a: (h["reason"], [e["event"] for e in h["events"]])
                                        for a, h in op["hosts"].items()}
    assert sorted(a for a, _ in fleet.actions) == sorted(fleet.boot)
    assert fleet.max_down <= 3


def test_second_copy_cannot_take_a_held_operation(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, fleet = world
    fleet.reboot_seconds = 0.5
    one = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    two = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {}})
    assert one.try_run("ClusterRestart", "c1")
    assert not two.try_run("ClusterRestart", "c1")
    wait_done(storage)


def test_an_abort_racing_a_host_start_on_a_cluster_named_clock(world) -> None:  # type: ignore[no-untyped-def]
    """A conflict is told apart by its class: 'the operation on 'clock' is
    aborted' once read as a lost lock ("lock" in the text), and the executor
    abandoned its hosts and never closed the operation."""
    bus, storage, fleet = world
    add_cluster(storage, fleet, "clock", [f"127.0.4.{i}" for i in range(1, 5)])
    fleet.reboot_seconds = 0.3
    real_call = bus.call
    lock = threading.Lock()
    starts: list[str] = []
    first_started = threading.Event()

    def abort_before_the_second_start(method: str, params: dict[str, Any] | None = None,
                                      **kw: Any) -> Any:
        if not (method == "storage.update_operation_host" and params and
                params["changes"].get("state") == "in_process"):
            return real_call(method, params, **kw)
        with lock:
            starts.append(params["address"])
            second = len(starts) == 2
        if second:
            # Hosts start on threads: the abort comes once the first host's start has
            # landed (it is acting), and before the second's lands (which races it).
            assert first_started.wait(10)
            storage.abort_operation("ClusterRestart", "clock")
        answer = real_call(method, params, **kw)
        if not second:
            first_started.set()
        return answer

    bus.call = abort_before_the_second_start
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "clock", "options": {"max_unavailable": 2}})
    assert svc.try_run("ClusterRestart", "clock")
    wait_done(storage, cluster="clock", seconds=15)
    deadline = time.monotonic() + 10  # the executor closes the operation after its last host
    while not (op := storage.get_operation("ClusterRestart", "clock"))["finished_at"] \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert op["status"] == "aborted" and op["finished_at"], op
    states = {a: h["state"] for a, h in op["hosts"].items()}
    first = starts[0]
    assert states.pop(first) == "done", op["hosts"][first]  # finished its restart, not abandoned
    assert set(states.values()) == {"skipped"}, states
    assert [a for a, _ in fleet.actions] == [first]
