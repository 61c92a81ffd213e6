"""The storage service over a dict store: semantics of every change, and atomicity."""
from __future__ import annotations

import json
import threading

import pytest

from commissaire import errors
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox

KEY = "LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K"  # "-----BEGIN OPENSSH PRIVATE KEY-----"


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def bus() -> DirectBus:
    return DirectBus()


@pytest.fixture
def svc(store: DictStore, bus: DirectBus) -> StorageService:
    service = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    service.ensure_default_network()
    return service


def host(address: str) -> dict:
    return {"address": address, "ssh_port": 22}


def creds(address: str, key: str = KEY) -> dict:
    return {"address": address, "ssh_priv_key": key, "remote_user": "root"}


def test_default_network_exists(svc: StorageService) -> None:
    assert svc.list_names("Network") == ["default"]


def test_cluster_create_is_idempotent_and_conflicts_on_difference(svc: StorageService) -> None:
    first = svc.create("Cluster", {"name": "c1", "network": "default"})
    assert first["created"] is True
    assert first["record"] == {"name": "c1", "status": "ok", "network": "default",
                               "container_manager": "", "container_runtime": "",
                               "hosts": {"total": 0, "available": 0, "unavailable": 0}}
    again = svc.create("Cluster", {"name": "c1", "network": "default"})
    assert again["created"] is False
    svc.create("Network", {"name": "n2", "type": "flannel_etcd", "options": {}})
    with pytest.raises(errors.Conflict):
        svc.create("Cluster", {"name": "c1", "network": "n2"})


def test_recreating_a_cluster_keeps_its_members(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    svc.create_host(host("10.0.0.1"), creds("10.0.0.1"), "c1")
    svc.create("Cluster", {"name": "c1"})
    assert svc.cluster_hosts("c1") == ["10.0.0.1"]


def test_cluster_needs_existing_network_and_manager(svc: StorageService) -> None:
    with pytest.raises(errors.Conflict, match="network 'nope'"):
        svc.create("Cluster", {"name": "c1", "network": "nope"})
    with pytest.raises(errors.Conflict, match="container manager 'cm'"):
        svc.create("Cluster", {"name": "c1", "container_manager": "cm"})
    assert svc.list_names("Cluster") == []


def test_host_with_cluster_is_one_transaction(svc: StorageService, store: DictStore) -> None:
    svc.create("Cluster", {"name": "c1"})
    before = store.commits
    out = svc.create_host(host("10.0.0.1"), creds("10.0.0.1"), "c1")
    assert out["created"] and out["record"]["status"] == "investigating"
    assert store.commits == before + 1
    assert svc.get_host("10.0.0.1")["cluster"] == "c1"
    assert svc.cluster_hosts("c1") == ["10.0.0.1"]


def test_host_in_missing_cluster_is_conflict_and_writes_nothing(svc: StorageService,
                                                              store: DictStore) -> None:
    keys = set(store.data)
    with pytest.raises(errors.Conflict, match="cluster 'headache' does not exist"):
        svc.create_host(host("10.0.0.1"), creds("10.0.0.1"), "headache")
    assert set(store.data) == keys


def test_host_recreate_same_key_ok_other_key_conflict(svc: StorageService) -> None:
    svc.create_host(host("10.0.0.1"), creds("10.0.0.1"))
    assert svc.create_host(host("10.0.0.1"), creds("10.0.0.1"))["created"] is False
    with pytest.raises(errors.Conflict, match="other credentials"):
        svc.create_host(host("10.0.0.1"), creds("10.0.0.1", "b3RoZXIK"))


def test_credentials_are_sealed_in_the_store_and_absent_from_notifications(
        svc: StorageService, store: DictStore, bus: DirectBus) -> None:
    svc.create_host(host("10.0.0.1"), creds("10.0.0.1"))
    dump = json.dumps({k: v for k, (v, _r) in store.data.items()})
    assert KEY not in dump
    assert "ssh_priv_key" not in dump
    assert svc.reveal_creds("10.0.0.1")["ssh_priv_key"] == KEY
    assert KEY not in json.dumps(bus.notifications)
    assert ("notify.storage.Host.created" in [k for k, _ in bus.notifications])


def test_deleting_a_host_removes_it_from_its_cluster_and_its_creds(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    svc.create_host(host("10.0.0.1"), creds("10.0.0.1"), "c1")
    assert svc.delete_host("10.0.0.1") == []
    assert svc.cluster_hosts("c1") == []
    assert svc.get_cluster("c1")["hosts"]["total"] == 0
    with pytest.raises(errors.NotFound):
        svc.reveal_creds("10.0.0.1")
    with pytest.raises(errors.NotFound):
        svc.delete_host("10.0.0.1")


def test_membership_add_remove_and_replace(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    for a in ("10.0.0.1", "10.0.0.2"):
        svc.create_host(host(a), creds(a))
    assert svc.cluster_add_host("c1", "10.0.0.1") == ["10.0.0.1"]
    assert svc.cluster_add_host("c1", "10.0.0.1") == ["10.0.0.1"]  # idempotent
    with pytest.raises(errors.Conflict, match="no longer the 'old' list"):
        svc.cluster_set_hosts("c1", ["bogus.example"], ["10.0.0.2"])
    assert svc.cluster_hosts("c1") == ["10.0.0.1"]
    assert svc.cluster_set_hosts("c1", ["10.0.0.1"], ["10.0.0.2"]) == ["10.0.0.2"]
    assert svc.get_host("10.0.0.1")["cluster"] == ""
    assert svc.get_host("10.0.0.2")["cluster"] == "c1"
    assert svc.cluster_remove_host("c1", "10.0.0.2") == []
    assert svc.cluster_remove_host("c1", "10.0.0.2") == []  # idempotent
    with pytest.raises(errors.NotFound, match="host '10.0.0.9'"):
        svc.cluster_add_host("c1", "10.0.0.9")
    with pytest.raises(errors.NotFound, match="cluster 'nope'"):
        svc.cluster_add_host("nope", "10.0.0.1")


def test_a_host_belongs_to_one_cluster(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    svc.create("Cluster", {"name": "c2"})
    svc.create_host(host("10.0.0.1"), creds("10.0.0.1"), "c1")
    with pytest.raises(errors.Conflict, match="already in cluster 'c1'"):
        svc.cluster_add_host("c2", "10.0.0.1")


def test_two_writers_on_one_cluster_lose_nothing(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    addresses = [f"10.0.1.{i}" for i in range(1, 41)]
    for a in addresses:
        svc.create_host(host(a), creds(a))

    def add(chunk: list[str]) -> None:
        for a in chunk:
            svc.cluster_add_host("c1", a)

    threads = [threading.Thread(target=add, args=(addresses[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(svc.cluster_hosts("c1")) == sorted(addresses)
    assert all(svc.get_host(a)["cluster"] == "c1" for a in addresses)


def test_cluster_status_is_computed_from_members(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    for a in ("10.0.0.1", "10.0.0.2"):
        svc.create_host(host(a), creds(a), "c1")
    assert svc.get_cluster("c1")["status"] == "failed"  # nobody active yet
    svc.update_host("10.0.0.1", {"status": "active"})
    shown = svc.get_cluster("c1")
    assert shown["status"] == "degraded"
    assert shown["hosts"] == {"total": 2, "available": 1, "unavailable": 1}
    svc.update_host("10.0.0.2", {"status": "active"})
    assert svc.get_cluster("c1")["status"] == "ok"


def test_network_and_manager_in_use_cannot_be_deleted(svc: StorageService) -> None:
    svc.create("ContainerManagerConfig", {"name": "cm", "type": "trivial", "options": {}})
    svc.create("Cluster", {"name": "c1", "container_manager": "cm"})
    with pytest.raises(errors.Conflict, match="used by cluster"):
        svc.delete("ContainerManagerConfig", "cm")
    with pytest.raises(errors.Conflict, match="used by cluster"):
        svc.delete("Network", "default")
    svc.delete("Cluster", "c1")
    assert svc.delete("ContainerManagerConfig", "cm") == []
    with pytest.raises(errors.NotFound):
        svc.delete("ContainerManagerConfig", "cm")


def test_manager_token_is_sealed_and_hidden(svc: StorageService, store: DictStore) -> None:
    svc.create("ContainerManagerConfig", {"name": "cm", "type": "kubernetes",
                                          "options": {"server_url": "https://k", "token": "s3cr3t"}})
    assert "s3cr3t" not in json.dumps({k: v for k, (v, _r) in store.data.items()})
    assert svc.get("ContainerManagerConfig", "cm")["options"]["token"] == "******"
    assert svc.reveal_container_manager("cm")["options"]["token"] == "s3cr3t"


def test_operations_run_one_at_a_time_and_abort(svc: StorageService) -> None:
    svc.create("Cluster", {"name": "c1"})
    svc.create_host(host("10.0.0.1"), creds("10.0.0.1"), "c1")
    started = svc.start_operation("ClusterRestart", {"name": "c1", "options": {}})
    assert started["status"] == "in_process" and started["restarted"] == []
    assert started["hosts"]["10.0.0.1"]["state"] == "pending"
    with pytest.raises(errors.Conflict, match="already in process"):
        svc.start_operation("ClusterRestart", {"name": "c1", "options": {}})
    with pytest.raises(errors.Conflict, match="abort it first"):
        svc.delete("Cluster", "c1")
    aborted = svc.abort_operation("ClusterRestart", "c1")
    assert aborted["status"] == "aborted"
    assert aborted["hosts"]["10.0.0.1"]["state"] == "skipped"
    assert svc.start_operation("ClusterRestart", {"name": "c1", "options": {}})["status"] == \
        "in_process"
    with pytest.raises(errors.NotFound):
        svc.start_operation("ClusterUpgrade", {"name": "nope", "options": {}})


def test_unavailable_store_is_a_503_error(svc: StorageService, store: DictStore) -> None:
    store.available = False
    with pytest.raises(errors.StoreUnavailable):
        svc.list_names("Cluster")


def test_only_registered_methods_dispatch(svc: StorageService) -> None:
    with pytest.raises(errors.MethodNotFound):
        svc.dispatch("storage._announce", {}, {})
    with pytest.raises(errors.InvalidRequest):
        svc.dispatch("storage.get_host", {"nope": 1}, {})
