"""Record incarnations: a host deleted and created again while a service works on it
never receives what was learned about the old record (investigator, watcher,
rolling operations), and the new record is worked on as its own."""
from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from commissaire import errors
from commissaire.ansible import runner
from commissaire.models import Host
from commissaire.ssh import REACHABLE, UNREACHABLE, ProbeResult
from commissaire.storage.base import Txn
from commissaire.storage.sqlite import SqliteStoreHandler
from commissaire_service.clusterexec import executor as executor_module
from commissaire_service.clusterexec.executor import Settings
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.investigator import service as investigator_module
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.sealing import SEALED
from commissaire_service.storage.service import StorageService
from commissaire_service.watcher import service as watcher_module
from commissaire_service.watcher.service import WatcherService
from tests.unit.fakes import DirectBus, HandlerSet, ReversibleBox
from tests.unit.test_clusterexec import Fleet
from tests.unit.test_investigator import ED25519, HOST_KEY

OLD_KEY = base64.b64encode(ED25519.encode()).decode()
# Another user's key for the re-created record (a valid key, other text).
NEW_KEY = base64.b64encode(ED25519.replace("test@sample", "new@sample").encode()).decode()
HOSTILE = "{{ lookup('pipe', 'id > /tmp/x') }}; touch /tmp/pwned\n"


@pytest.fixture
def store() -> Iterator[SqliteStoreHandler]:
    handler = SqliteStoreHandler(":memory:")  # leases too, for operation locks
    yield handler
    handler.close()


@pytest.fixture
def world(store: SqliteStoreHandler) -> tuple[DirectBus, StorageService]:
    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    return bus, storage


def create(storage: StorageService, address: str, key: str = OLD_KEY, cluster: str = "",
           **host: Any) -> dict[str, Any]:
    out = storage.create_host({"address": address, **host},
                              {"address": address, "remote_user": "root", "ssh_priv_key": key},
                              cluster)
    return dict(out["record"])


def recreate(storage: StorageService, address: str, cluster: str = "") -> dict[str, Any]:
    storage.delete_host(address)
    return create(storage, address, key=NEW_KEY, cluster=cluster)


# -- the storage service -------------------------------------------------------


def test_each_creation_is_a_new_incarnation_the_caller_cannot_choose(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    first = create(storage, "10.0.0.1", uid="chosen-by-caller")
    assert len(first["uid"]) == 32 and first["uid"] != "chosen-by-caller"
    assert storage.get_host("10.0.0.1")["uid"] == first["uid"]
    second = recreate(storage, "10.0.0.1")
    assert second["uid"] != first["uid"]
    created = [p["record"] for k, p in bus.notifications if k == "notify.storage.Host.created"]
    assert [r["uid"] for r in created] == [first["uid"], second["uid"]]


def test_the_api_body_cannot_set_the_uid() -> None:
    host, _creds, _cluster = Host.input_to_records(
        "10.0.0.1", {"ssh_priv_key": OLD_KEY, "uid": "0" * 32})
    assert host.uid == ""  # ignored: the storage service sets it on creation


def test_an_update_of_a_gone_incarnation_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    old = create(storage, "10.0.0.1")
    new = recreate(storage, "10.0.0.1")
    with pytest.raises(errors.StaleRecord):
        bus.call("storage.update_host", {"address": "10.0.0.1", "uid": old["uid"],
                                         "changes": {"status": "failed",
                                                     "status_reason": HOSTILE}})
    assert storage.get_host("10.0.0.1") == new  # untouched
    updated = bus.call("storage.update_host", {"address": "10.0.0.1", "uid": new["uid"],
                                               "changes": {"status": "failed"}})
    assert updated["status"] == "failed"


def test_over_the_bus_an_update_must_name_its_incarnation(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    create(storage, "10.0.0.1")
    with pytest.raises(errors.InvalidRequest):
        bus.call("storage.update_host", {"address": "10.0.0.1", "changes": {"status": "failed"}})
    with pytest.raises(errors.ValidationError, match="uid"):
        bus.call("storage.update_host", {"address": "10.0.0.1", "uid": None,
                                         "changes": {"status": "failed"}})
    assert storage.get_host("10.0.0.1")["status"] == "investigating"


def test_credentials_are_read_for_one_incarnation(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    old = create(storage, "10.0.0.1")
    recreate(storage, "10.0.0.1")
    with pytest.raises(errors.StaleRecord):
        bus.call("storage.reveal_creds", {"address": "10.0.0.1", "uid": old["uid"]})


def test_records_stored_before_uids_are_the_legacy_incarnation(world, store) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    create(storage, "10.0.0.1")
    # As the previous version stored them: no uid, credentials sealed in format 1.
    host = store.get("hosts/10.0.0.1").value
    host.pop("uid")
    secret = json.dumps({"ssh_priv_key": OLD_KEY, "remote_user": "root"})
    assert store.commit(Txn(puts=[
        ("hosts/10.0.0.1", host),
        ("secrets/hosts/10.0.0.1", {"address": "10.0.0.1", SEALED: ReversibleBox().encrypt(
            secret, "HostCreds/10.0.0.1")})]))
    assert storage.get_host("10.0.0.1")["uid"] == ""
    assert bus.call("storage.reveal_creds", {"address": "10.0.0.1", "uid": ""})["ssh_priv_key"]
    bus.call("storage.update_host", {"address": "10.0.0.1", "uid": "",
                                     "changes": {"status": "active"}})
    assert storage.get_host("10.0.0.1")["status"] == "active"
    new = recreate(storage, "10.0.0.1")  # a new incarnation: the legacy one is stale now
    with pytest.raises(errors.StaleRecord):
        bus.call("storage.update_host", {"address": "10.0.0.1", "uid": "",
                                         "changes": {"status": "failed"}})
    assert storage.get_host("10.0.0.1") == new


def test_stale_watcher_checks_are_not_recorded(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    old = create(storage, "10.0.0.1")
    new = recreate(storage, "10.0.0.1")
    out = bus.call("storage.record_checks", {"checks": [
        {"address": "10.0.0.1", "uid": old["uid"],
         "changes": {"status": "failed", "status_reason": "refused", "last_check": "x"}},
        {"address": "10.0.0.1", "changes": {"status": "failed"}}]})  # names none
    assert out == {"recorded": 0, "missing": [], "stale": ["10.0.0.1", "10.0.0.1"]}
    assert storage.get_host("10.0.0.1") == new


def test_stale_operation_progress_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    storage.create("Cluster", {"name": "c1"})
    old = create(storage, "10.0.0.1", cluster="c1")
    op = storage.start_operation("ClusterRestart", {"name": "c1", "options": {}})
    assert op["hosts"]["10.0.0.1"]["uid"] == old["uid"]
    lease = storage.acquire_lock("ClusterRestart.c1", "test")["lease"]
    new = recreate(storage, "10.0.0.1", cluster="c1")

    def update(uid: str | None, **changes: Any) -> dict[str, Any]:
        return dict(bus.call("storage.update_operation_host", {
            "kind": "ClusterRestart", "name": "c1", "address": "10.0.0.1", "lease": lease,
            "changes": changes, "event": "x", "uid": uid}))

    # The old incarnation is gone; the new one is not what the operation started on.
    for uid in (old["uid"], new["uid"], None):
        with pytest.raises(errors.StaleRecord):
            update(uid, state="in_process")
        with pytest.raises(errors.StaleRecord):
            update(uid, state="done")
    assert storage.get_operation("ClusterRestart", "c1")["hosts"]["10.0.0.1"]["state"] == \
        "pending"
    # Closing the old incarnation's entry is still recorded.
    closed = update(old["uid"], state="skipped", reason="re-created")
    assert closed["hosts"]["10.0.0.1"]["state"] == "skipped"


# -- the investigator ------------------------------------------------------------


class RecreatingRecorder:
    """run_playbook that deletes and re-creates the host while Ansible "runs", then
    reports the old user's failure; later runs succeed."""

    def __init__(self, storage: StorageService) -> None:
        self.storage = storage
        self.runs: list[list[runner.Target]] = []

    def __call__(self, playbook: str, targets: list[runner.Target], **kw: Any
                 ) -> runner.RunResult:
        self.runs.append(list(targets))
        if len(self.runs) == 1:
            for t in targets:
                recreate(self.storage, t.address)
            return runner.RunResult({t.address: runner.HostResult(
                runner.AUTH_FAILED, "SSH authentication as olduser failed") for t in targets},
                "failed")
        for t in targets:
            kw["on_ok"](t.address, "Record facts", {"ansible_facts": {"commissaire_facts": {
                "os": "debian", "cpus": 2, "memory": 2048000, "space": 1000}}})
        return runner.RunResult({t.address: runner.HostResult(runner.OK) for t in targets},
                                "successful")


def test_a_stale_investigation_is_refused_and_the_new_record_investigated(
        world, monkeypatch: pytest.MonkeyPatch) -> None:
    bus, storage = world
    recorder = RecreatingRecorder(storage)
    monkeypatch.setattr(investigator_module.runner, "run_playbook", recorder)

    async def fake_fetch(address: str, port: int = 22, timeout: float = 10.0,
                         **kw: Any) -> str:
        return HOST_KEY

    monkeypatch.setattr(investigator_module, "fetch_host_key", fake_fetch)
    svc = InvestigatorService(bus, batch_window=0.01)
    try:
        create(storage, "127.0.1.7")
        bus.notifications.clear()
        svc.run_batch(["127.0.1.7"])  # the host is deleted and created again meanwhile
        new = storage.get_host("127.0.1.7")
        assert (new["status"], new["status_reason"]) == ("investigating", "")
        assert new["ssh_host_key"] == ""  # nothing of the old run reached it
        # The creation was announced with the new uid; the investigator acts on it.
        (created,) = [p for k, p in bus.notifications if k == "notify.storage.Host.created"]
        assert created["record"]["uid"] == new["uid"]
        svc.dispatch("notify.storage.Host.created", created, {})
        deadline = time.monotonic() + 10
        while storage.get_host("127.0.1.7")["status"] == "investigating" \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        done = storage.get_host("127.0.1.7")
        assert done["status"] == "disassociated", done
        assert done["uid"] == new["uid"] and done["os"] == "debian"
        # The second run used the new record's key, not the old one.
        assert recorder.runs[1][0].private_key == base64.b64decode(NEW_KEY).decode()
    finally:
        svc.stop()


# -- the watcher -----------------------------------------------------------------


def test_a_stale_watcher_check_is_refused(world, monkeypatch: pytest.MonkeyPatch) -> None:
    bus, storage = world
    outcome = {"result": ProbeResult(REACHABLE, output="b1")}
    probed: list[str] = []

    async def fake_probe_many(targets, concurrency, timeout, kex_algorithms="", **kw):  # type: ignore[no-untyped-def]
        probed.extend(t.address for t in targets)
        return {t.address: outcome["result"] for t in targets}

    monkeypatch.setattr(watcher_module, "probe_many", fake_probe_many)
    old = create(storage, "127.0.1.8")
    storage.update_host("127.0.1.8", {"status": "active", "bootstrapped": True})
    watcher = WatcherService(bus, interval=1, start=False)
    watcher.load()
    watcher.run_cycle()  # checked once: its credentials are known now
    assert probed == ["127.0.1.8"]
    # Deleted and created again while the watcher still holds the old record ...
    new = recreate(storage, "127.0.1.8")
    outcome["result"] = ProbeResult(UNREACHABLE, "cannot reach 127.0.1.8:22 over SSH")
    watcher.run_cycle()
    assert len(probed) == 2 and watcher.hosts["127.0.1.8"]["uid"] == old["uid"]
    # ... its failure is not written onto the new record.
    assert storage.get_host("127.0.1.8") == new
    # Once the notifications arrive the new record is what it watches.
    for key, params in bus.notifications:
        if key.startswith("notify.storage.Host."):
            watcher.dispatch(key, params, {})
    assert watcher.hosts["127.0.1.8"]["uid"] == new["uid"]


# -- rolling operations -------------------------------------------------------------


def test_a_stale_operation_update_is_refused(world, monkeypatch: pytest.MonkeyPatch) -> None:
    bus, storage = world
    fleet = Fleet(reboot_seconds=0.1)
    storage.create("Cluster", {"name": "c1"})
    for i in (1, 2):
        address = f"127.0.3.{i}"
        create(storage, address, cluster="c1")
        storage.update_host(address, {"status": "disassociated", "bootstrapped": True,
                                      "os": "debian", "ssh_host_key": HOST_KEY})
        fleet.add(address)
    recreated: dict[str, Any] = {}
    lock = threading.Lock()

    def run_playbook(playbook: str, targets: list[runner.Target], **kw: Any) -> runner.RunResult:
        with lock:
            for t in targets:
                if t.address == "127.0.3.1" and not recreated:
                    recreated.update(recreate(storage, "127.0.3.1", cluster="c1"))
        return fleet.run_playbook(playbook, targets, **kw)

    monkeypatch.setattr(executor_module.runner, "run_playbook", run_playbook)
    monkeypatch.setattr(executor_module, "probe", fleet.probe)
    svc = ClusterExecService(bus, lease_ttl=3, settings=Settings(gate_timeout=3, poll=0.02),
                             start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {"max_unavailable": 1}})
    assert svc.try_run("ClusterRestart", "c1")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        op = storage.get_operation("ClusterRestart", "c1")
        if op["status"] != "in_process" and not op["in_process"]:
            break
        time.sleep(0.05)
    entry = op["hosts"]["127.0.3.1"]
    assert entry["state"] == "skipped", entry
    assert "deleted or created again" in entry["reason"]
    assert op["hosts"]["127.0.3.2"]["state"] == "done"
    assert op["status"] == "finished"
    # The new record was not touched by the operation.
    assert storage.get_host("127.0.3.1") == recreated
