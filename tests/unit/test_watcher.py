"""The watcher's decisions with the storage service behind a direct bus and the SSH
probe replaced (real probes against lab hosts are in tests/lab)."""
from __future__ import annotations

import base64

import pytest

from commissaire.ssh import AUTH_FAILED, REACHABLE, UNREACHABLE, ProbeResult
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from commissaire_service.watcher import service as watcher_module
from commissaire_service.watcher.service import WatcherService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(DictStore()), ReversibleBox()),
                             notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    outcomes: dict[str, ProbeResult] = {}
    probed: list[list[str]] = []

    async def fake_probe_many(targets, concurrency, timeout, kex_algorithms="", reach=None):  # type: ignore[no-untyped-def]
        probed.append([t.address for t in targets])
        return {t.address: outcomes.get(t.address, ProbeResult(REACHABLE, output="b1"))
                for t in targets}

    monkeypatch.setattr(watcher_module, "probe_many", fake_probe_many)
    return bus, storage, outcomes, probed


def add(storage: StorageService, address: str, status: str, bootstrapped: bool = True,
        cluster: str = "") -> None:
    storage.create_host({"address": address}, {"address": address, "remote_user": "root",
                                               "ssh_priv_key": base64.b64encode(b"k").decode()},
                        cluster)
    storage.update_host(address, {"status": status, "bootstrapped": bootstrapped})


def test_only_bootstrapped_watched_hosts_are_checked(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, outcomes, probed = world
    add(storage, "127.0.1.1", "active")
    add(storage, "127.0.1.2", "failed", bootstrapped=False)  # failed investigation
    add(storage, "127.0.1.3", "investigating", bootstrapped=False)
    watcher = WatcherService(bus, interval=1, start=False)
    watcher.load()
    watcher.run_cycle()
    assert probed == [["127.0.1.1"]]
    assert storage.get_host("127.0.1.1")["last_check"] is not None


def test_failed_and_back_both_ways(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, outcomes, probed = world
    storage.create("ContainerManagerConfig", {"name": "cm", "type": "trivial", "options": {}})
    storage.create("Cluster", {"name": "c1", "container_manager": "cm"})
    add(storage, "127.0.1.1", "active", cluster="c1")
    add(storage, "127.0.1.2", "disassociated")
    watcher = WatcherService(bus, interval=1, start=False)
    watcher.load()
    for key, params in list(bus.notifications):
        if key.startswith("notify.storage.Host."):
            watcher.dispatch(key, params, {})
    outcomes["127.0.1.1"] = ProbeResult(UNREACHABLE, "cannot reach 127.0.1.1:22 over SSH: refused")
    outcomes["127.0.1.2"] = ProbeResult(AUTH_FAILED, "the private key was refused")
    bus.notifications.clear()
    watcher.run_cycle()
    first = storage.get_host("127.0.1.1")
    assert (first["status"], first["status_reason"]) == (
        "failed", "cannot reach 127.0.1.1:22 over SSH: refused")
    assert storage.get_host("127.0.1.2")["status"] == "failed"
    # Status changes are announced (and the watcher learns them that way) ...
    for key, params in bus.notifications:
        watcher.dispatch(key, params, {})
    assert watcher.hosts["127.0.1.1"]["status"] == "failed"
    outcomes.clear()
    bus.notifications.clear()
    watcher.run_cycle()
    assert storage.get_host("127.0.1.1")["status"] == "active"  # managed cluster
    assert storage.get_host("127.0.1.2")["status"] == "disassociated"  # no manager
    assert storage.get_host("127.0.1.1")["status_reason"] == ""
    # ... while a check that changes nothing but last_check is not.
    bus.notifications.clear()
    watcher.on_host_changed(storage.get_host("127.0.1.1"))
    watcher.on_host_changed(storage.get_host("127.0.1.2"))
    watcher.run_cycle()
    assert bus.notifications == []


def test_deleted_hosts_are_forgotten(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, outcomes, probed = world
    add(storage, "127.0.1.1", "active")
    watcher = WatcherService(bus, interval=1, start=False)
    watcher.load()
    storage.delete_host("127.0.1.1")
    for key, params in bus.notifications:
        if key == "notify.storage.Host.deleted":
            watcher.dispatch(key, params, {})
    watcher.run_cycle()
    assert probed == []


def test_watchers_split_the_hosts(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, outcomes, probed = world
    for i in range(1, 41):
        add(storage, f"127.0.2.{i}", "active")
    one = WatcherService(bus, interval=1, start=False)
    two = WatcherService(bus, interval=1, start=False)
    two.instance = "other:2"
    for w in (one, two):
        w.load()
        w.on_heartbeat(one.instance, 0)
        w.on_heartbeat(two.instance, 0)
    mine_one = {h["address"] for h in one.due()}
    mine_two = {h["address"] for h in two.due()}
    assert mine_one.isdisjoint(mine_two)
    assert len(mine_one | mine_two) == 40
    assert mine_one and mine_two
