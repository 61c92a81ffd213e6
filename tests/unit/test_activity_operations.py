"""Every step of a rolling operation is an entry: each host's state change
(pending -> in_process -> done | failed | skipped) and the operation's end,
written once by the storage service where it commits them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from commissaire.storage.sqlite import SqliteStoreHandler
from commissaire_service.clusterexec import executor as executor_module
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DirectBus, HandlerSet, ReversibleBox
from tests.unit.test_clusterexec import Fleet, add_cluster, settings, wait_done

HOSTS = ["127.0.5.1", "127.0.5.2", "127.0.5.3"]
CLUSTEREXEC = {"name": "clusterexec", "method": "service"}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    bus = DirectBus()
    store = SqliteStoreHandler(path=str(tmp_path / "db.sqlite"))
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    fleet = Fleet()
    monkeypatch.setattr(executor_module.runner, "run_playbook", fleet.run_playbook)
    monkeypatch.setattr(executor_module, "probe", fleet.probe)
    add_cluster(storage, fleet, "c1", HOSTS)
    yield bus, storage, fleet
    store.close()


def steps(storage: StorageService, **filters: Any) -> list[dict[str, Any]]:
    return list(storage.list_events(order="oldest", **filters)["items"])


def finished(storage: StorageService, seconds: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = steps(storage, action="finish")
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the operation's end was not recorded")


def test_each_host_step_and_the_end_are_entries(world: Any) -> None:
    bus, storage, fleet = world
    fleet.dead.add(HOSTS[2])  # fails before anything touches it
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {
        "max_unavailable": 1, "failure_tolerance": 1}})
    assert svc.try_run("ClusterRestart", "c1")
    assert wait_done(storage)["status"] == "finished"
    (end,) = finished(storage)
    assert end["fields"] == {"status": "finished", "reason": "1 host(s) failed within the "
                                                           "tolerance"}
    entries = steps(storage, object_kind="cluster", object_key="c1/restart")
    assert entries[-1] == end
    assert all(e["actor"] == CLUSTEREXEC and e["object"] == {"kind": "cluster",
                                                              "key": "c1/restart"}
               for e in entries)
    changes = {address: [(e["fields"]["previous"], e["fields"]["state"]) for e in entries
                         if e["fields"].get("host") == address] for address in HOSTS}
    assert changes == {HOSTS[0]: [("pending", "in_process"), ("in_process", "done")],
                       HOSTS[1]: [("pending", "in_process"), ("in_process", "done")],
                       HOSTS[2]: [("pending", "failed")]}
    failed = next(e for e in entries if e["fields"].get("state") == "failed")
    assert "unreachable before the operation" in failed["fields"]["reason"]
    # a host's history includes its steps
    assert [e["fields"]["state"] for e in steps(storage, object_kind="host",
                                                object_key=HOSTS[0])] == ["in_process", "done"]
    assert all(e["outcome"] == {"status": 200, "error": ""} for e in entries)


def test_an_abort_records_the_skipped_hosts(world: Any) -> None:
    bus, storage, fleet = world
    fleet.reboot_seconds = 0.5
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {"max_unavailable": 1}})
    svc.try_run("ClusterRestart", "c1")
    deadline = time.monotonic() + 10
    while not steps(storage, action="step") and time.monotonic() < deadline:
        time.sleep(0.02)
    storage.abort_operation("ClusterRestart", "c1")
    wait_done(storage)
    (end,) = finished(storage)
    assert end["fields"]["status"] == "aborted"
    skipped = [e for e in steps(storage, action="step") if e["fields"]["state"] == "skipped"]
    assert len(skipped) == 2
    assert all(e["actor"] == {"name": "storage", "method": "service"}
               and e["fields"]["previous"] == "pending" for e in skipped)
