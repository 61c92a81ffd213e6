"""The typed clients (commissaire.bus.clients) are the bus protocol: each sends its
own method name with the parameters the service takes and turns the answer into
records; every method a service exposes has exactly one client method and the
reverse, so the two cannot drift apart. Records answered to REST clients go
through from_dict and back through to_safe_dict: that round trip changes nothing.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from commissaire import activity
from commissaire.bus.clients import (
    CLIENTS,
    DRAIN_MARGIN,
    ClusterExecClient,
    ContainerClient,
    Created,
    EventPage,
    HostPage,
    InvestigatorClient,
    ServiceClient,
    StorageClient,
    TokenCreated,
    WatcherClient,
)
from commissaire.models import (
    ApiToken,
    Cluster,
    ClusterDeploy,
    ClusterRestart,
    ClusterUpgrade,
    ContainerManagerConfig,
    Host,
    HostCreds,
    Network,
)
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.containermgr.service import ContainerManagerService
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.service import Service
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from commissaire_service.watcher.service import WatcherService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox

KEY = "LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K"

SERVICES: dict[type[Service], type[ServiceClient]] = {
    StorageService: StorageClient,
    InvestigatorService: InvestigatorClient,
    WatcherService: WatcherClient,
    ClusterExecService: ClusterExecClient,
    ContainerManagerService: ContainerClient,
}


def client_methods(client: type[ServiceClient]) -> set[str]:
    """The client's public methods: one per bus method of its service."""
    return {name for name, value in inspect.getmembers(client, inspect.isfunction)
            if not name.startswith("_")}


@dataclass
class Sent:
    method: str
    params: dict[str, Any]
    timeout: float | None
    request_id: str | None


@dataclass
class RecordingBus:
    """Answers every call with `answer` and remembers what was sent."""

    answer: Any = None
    sent: list[Sent] = field(default_factory=list)

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None) -> Any:
        self.sent.append(Sent(method, dict(params or {}), timeout, request_id))
        return self.answer


# -- the protocol: one client method per bus method -------------------------------

@pytest.mark.parametrize("service", list(SERVICES), ids=lambda s: s.name)
def test_every_bus_method_has_exactly_one_client_method(service: type[Service]) -> None:
    client = SERVICES[service]
    assert client.service == service.name
    assert CLIENTS[service.name] is client
    exposed = {method.split(".", 1)[1] for method in service.bus_methods()}
    assert exposed == client_methods(client)


def test_every_service_has_a_client() -> None:
    assert set(CLIENTS.values()) == set(SERVICES.values())


def test_exposure_is_what_an_instance_registers() -> None:
    """bus_methods() (read off the class) is what dispatch answers."""
    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(DictStore()), ReversibleBox()))
    clusterexec = ClusterExecService(bus, start=False)
    container = ContainerManagerService(bus)
    for instance in (storage, clusterexec, container):
        assert instance.exposed() == sorted(type(instance).bus_methods())


# -- each method: its name, its parameters, its answer ------------------------------

HOST = {"address": "10.0.0.1", "status": "active", "os": "fedora", "cpus": 2, "memory": 1024,
        "space": 2048, "last_check": "2030-01-01T00:00:00", "source": "", "ssh_port": 22,
        "status_reason": "", "host_key_fingerprint": "", "ssh_host_key": "",
        "bootstrapped": True, "cluster": "c1", "uid": "u1"}
CLUSTER = {"name": "c1", "status": "degraded", "network": "default", "container_manager": "k",
           "container_runtime": "", "hosts": {"total": 2, "available": 1, "unavailable": 1}}
RESTART = {"name": "c1", "status": "in_process", "started_at": "2030-01-01T00:00:00",
           "finished_at": None, "options": {}, "reason": "",
           "hosts": {"10.0.0.1": {"state": "done"}, "10.0.0.2": {"state": "in_process"}},
           "restarted": ["10.0.0.1"], "in_process": ["10.0.0.2"]}
CREDS = {"address": "10.0.0.1", "ssh_priv_key": KEY, "remote_user": "core", "uid": "u1"}
EVENT = activity.make("create", "host", "10.0.0.1", actor={"name": "a", "method": "basic"},
                      fields={"ssh_priv_key": KEY}, status=201)
TOKEN = {"name": "ci", "role": "viewer", "clusters": [], "expires_at": None,
         "id": "0123456789abcdef", "created_at": "2030-01-01T00:00:00", "created_by": "a",
         "last_used_at": None}
MANAGER = {"name": "k", "type": "kubernetes", "uid": "m1",
           "options": {"server_url": "https://k:6443", "token": "t0ken"}}


@dataclass
class Case:
    call: Callable[[Any], Any]  # the client -> the result
    method: str
    params: dict[str, Any]
    answer: Any
    check: Callable[[Any], bool]


CASES: dict[str, list[Case]] = {
    "storage": [
        Case(lambda c: c.ping(), "storage.ping", {}, {"service": "storage", "status": "ok"},
             lambda r: r["service"] == "storage"),
        Case(lambda c: c.get(Cluster, "c1"), "storage.get", {"kind": "Cluster", "key": "c1"},
             CLUSTER, lambda r: isinstance(r, Cluster) and r.to_safe_dict() == CLUSTER),
        Case(lambda c: c.reveal_container_manager("k"), "storage.reveal_container_manager",
             {"name": "k"}, MANAGER,
             lambda r: isinstance(r, ContainerManagerConfig) and r.options["token"] == "t0ken"),
        Case(lambda c: c.list_names(Network), "storage.list_names", {"kind": "Network"},
             ["default"], lambda r: r == ["default"]),
        Case(lambda c: c.create(Network(name="n1")), "storage.create",
             {"kind": "Network", "record": {"name": "n1", "type": "flannel_etcd", "options": {}}},
             {"created": True, "record": {"name": "n1", "type": "flannel_etcd", "options": {}}},
             lambda r: isinstance(r, Created) and r.created and isinstance(r.record, Network)),
        Case(lambda c: c.delete(Network, "n1"), "storage.delete",
             {"kind": "Network", "key": "n1"}, [], lambda r: r is None),
        Case(lambda c: c.get_host("10.0.0.1"), "storage.get_host", {"address": "10.0.0.1"},
             HOST, lambda r: isinstance(r, Host) and r.to_safe_dict() == HOST),
        Case(lambda c: c.list_hosts(cluster="c1", limit=5), "storage.list_hosts",
             {"cluster": "c1", "status": "", "limit": 5, "offset": 0},
             {"total": 7, "items": [HOST]},
             lambda r: isinstance(r, HostPage) and r.total == 7
             and [h.to_safe_dict() for h in r.items] == [HOST]),
        Case(lambda c: c.create_host(Host(address="10.0.0.1"),
                                     HostCreds(address="10.0.0.1", ssh_priv_key=KEY), "c1"),
             "storage.create_host",
             {"host": Host(address="10.0.0.1").to_dict(),
              "creds": HostCreds(address="10.0.0.1", ssh_priv_key=KEY).to_dict(),
              "cluster": "c1"},
             {"created": False, "record": HOST},
             lambda r: r.created is False and r.record.to_safe_dict() == HOST),
        Case(lambda c: c.reveal_creds("10.0.0.1"), "storage.reveal_creds",
             {"address": "10.0.0.1"}, CREDS,
             lambda r: isinstance(r, HostCreds) and r.ssh_priv_key == KEY),
        Case(lambda c: c.update_host("10.0.0.1", {"status": "failed"}, uid="u1"),
             "storage.update_host",
             {"address": "10.0.0.1", "uid": "u1", "changes": {"status": "failed"}},
             HOST, lambda r: isinstance(r, Host)),
        Case(lambda c: c.record_checks([{"address": "10.0.0.1", "uid": "u1",
                                         "changes": {"last_check": "x"}}]),
             "storage.record_checks",
             {"checks": [{"address": "10.0.0.1", "uid": "u1", "changes": {"last_check": "x"}}]},
             {"recorded": 1, "missing": [], "stale": []}, lambda r: r["recorded"] == 1),
        Case(lambda c: c.delete_host("10.0.0.1"), "storage.delete_host",
             {"address": "10.0.0.1"}, [], lambda r: r is None),
        Case(lambda c: c.etcd_endpoint(), "storage.etcd_endpoint", {}, "http://e:2379",
             lambda r: r == "http://e:2379"),
        Case(lambda c: c.cluster_hosts("c1"), "storage.cluster_hosts", {"name": "c1"},
             ["10.0.0.1"], lambda r: r == ["10.0.0.1"]),
        Case(lambda c: c.cluster_add_host("c1", "10.0.0.1"), "storage.cluster_add_host",
             {"name": "c1", "address": "10.0.0.1"}, ["10.0.0.1"], lambda r: r == ["10.0.0.1"]),
        Case(lambda c: c.cluster_remove_host("c1", "10.0.0.1"), "storage.cluster_remove_host",
             {"name": "c1", "address": "10.0.0.1"}, [], lambda r: r is None),
        Case(lambda c: c.cluster_set_hosts("c1", [], ["10.0.0.1"]), "storage.cluster_set_hosts",
             {"name": "c1", "old": [], "new": ["10.0.0.1"]}, ["10.0.0.1"],
             lambda r: r == ["10.0.0.1"]),
        Case(lambda c: c.start_operation(ClusterRestart(name="c1")), "storage.start_operation",
             {"kind": "ClusterRestart", "record": ClusterRestart(name="c1").to_dict()}, RESTART,
             lambda r: isinstance(r, ClusterRestart) and r.to_safe_dict() == RESTART),
        Case(lambda c: c.get_operation(ClusterRestart, "c1"), "storage.get_operation",
             {"kind": "ClusterRestart", "name": "c1"}, RESTART,
             lambda r: isinstance(r, ClusterRestart) and r.to_safe_dict() == RESTART),
        Case(lambda c: c.abort_operation(ClusterRestart, "c1"), "storage.abort_operation",
             {"kind": "ClusterRestart", "name": "c1"}, RESTART,
             lambda r: isinstance(r, ClusterRestart)),
        Case(lambda c: c.list_operations(), "storage.list_operations", {"status": "in_process"},
             [{"kind": "ClusterRestart", **RESTART},
              {"kind": "ClusterDeploy", **RESTART, "version": "2"}],
             lambda r: [type(o) for o in r] == [ClusterRestart, ClusterDeploy]
             and r[1].version == "2"),
        Case(lambda c: c.update_operation_host(ClusterUpgrade, "c1", "10.0.0.1", 7,
                                               {"state": "done"}, event="healthy", uid="u1"),
             "storage.update_operation_host",
             {"kind": "ClusterUpgrade", "name": "c1", "address": "10.0.0.1", "lease": 7,
              "changes": {"state": "done"}, "event": "healthy", "uid": "u1"},
             RESTART, lambda r: isinstance(r, ClusterUpgrade)),
        Case(lambda c: c.finish_operation(ClusterRestart, "c1", 7, "finished"),
             "storage.finish_operation",
             {"kind": "ClusterRestart", "name": "c1", "lease": 7, "status": "finished",
              "reason": ""}, RESTART, lambda r: isinstance(r, ClusterRestart)),
        Case(lambda c: c.acquire_lock("ClusterRestart.c1", "me", 3), "storage.acquire_lock",
             {"name": "ClusterRestart.c1", "owner": "me", "ttl": 3},
             {"acquired": True, "lease": 7}, lambda r: r == {"acquired": True, "lease": 7}),
        Case(lambda c: c.keepalive_lock("ClusterRestart.c1", 7), "storage.keepalive_lock",
             {"name": "ClusterRestart.c1", "lease": 7}, {"ttl": 3}, lambda r: r == 3),
        Case(lambda c: c.release_lock("ClusterRestart.c1", 7), "storage.release_lock",
             {"name": "ClusterRestart.c1", "lease": 7}, [], lambda r: r is None),
        Case(lambda c: c.record_event(EVENT), "storage.record_event",
             {"event": EVENT.to_dict()}, [], lambda r: r is None),
        Case(lambda c: c.list_events(object_kind="host", object_key="10.0.0.1", limit=5),
             "storage.list_events",
             {"object_kind": "host", "object_key": "10.0.0.1", "actor": "", "action": "",
              "since": "", "until": "", "limit": 5, "offset": 0, "order": "newest"},
             {"total": 9, "items": [EVENT.to_dict()]},
             lambda r: isinstance(r, EventPage) and r.total == 9
             and [e.to_safe_dict() for e in r.items] == [EVENT.to_dict()]),
        Case(lambda c: c.create_token(ApiToken(name="ci", role="viewer")),
             "storage.create_token", {"record": ApiToken(name="ci", role="viewer").to_dict()},
             {"record": TOKEN, "token": "cmt_x"},
             lambda r: isinstance(r, TokenCreated) and r.record.to_safe_dict() == TOKEN
             and r.token == "cmt_x" and "cmt_x" not in repr(r)),
        Case(lambda c: c.list_tokens(), "storage.list_tokens", {}, [TOKEN],
             lambda r: [t.to_safe_dict() for t in r] == [TOKEN]),
        Case(lambda c: c.get_token("ci"), "storage.get_token", {"name": "ci"}, TOKEN,
             lambda r: isinstance(r, ApiToken) and r.to_safe_dict() == TOKEN),
        Case(lambda c: c.revoke_token("ci"), "storage.revoke_token", {"name": "ci"}, [],
             lambda r: r is None),
        Case(lambda c: c.verify_token("cmt_x"), "storage.verify_token", {"token": "cmt_x"},
             {"name": "ci", "role": "viewer", "clusters": []},
             lambda r: r == {"name": "ci", "role": "viewer", "clusters": []}),
    ],
    "investigator": [
        Case(lambda c: c.ping(), "investigator.ping", {}, {"queued": 0},
             lambda r: r == {"queued": 0}),
    ],
    "watcher": [
        Case(lambda c: c.ping(), "watcher.ping", {}, {"peers": 1}, lambda r: r == {"peers": 1}),
    ],
    "clusterexec": [
        Case(lambda c: c.ping(), "clusterexec.ping", {}, {"running": []},
             lambda r: r == {"running": []}),
    ],
    "container": [
        Case(lambda c: c.ping(), "container.ping", {}, {"clients": 0},
             lambda r: r == {"clients": 0}),
        *(Case(lambda c, m=m: getattr(c, m)("k", "10.0.0.1"), f"container.{m}",
               {"container_manager": "k", "address": "10.0.0.1"}, {"address": "10.0.0.1"},
               lambda r: r == {"address": "10.0.0.1"})
          for m in ("register_node", "get_node_status", "cordon", "uncordon")),
        Case(lambda c: c.node_ready("k", "10.0.0.1"), "container.node_ready",
             {"container_manager": "k", "address": "10.0.0.1"}, True, lambda r: r is True),
        Case(lambda c: c.drain("k", "10.0.0.1", timeout=30), "container.drain",
             {"container_manager": "k", "address": "10.0.0.1", "timeout": 30},
             {"evicted": []}, lambda r: r == {"evicted": []}),
    ],
}


@pytest.mark.parametrize("service", sorted(CASES))
def test_each_method_sends_its_name_and_params_and_converts_the_answer(service: str) -> None:
    client_class = CLIENTS[service]
    covered = set()
    for case in CASES[service]:
        bus = RecordingBus(case.answer)
        result = case.call(client_class(bus, request_id="req-1"))
        assert [(s.method, s.params) for s in bus.sent] == [(case.method, case.params)]
        assert bus.sent[0].request_id == "req-1"
        assert case.check(result), (case.method, result)
        covered.add(case.method.split(".", 1)[1])
    assert covered == client_methods(client_class)  # every method is tried here


def test_a_client_passes_its_request_id_and_timeout() -> None:
    bus = RecordingBus({"address": "10.0.0.1"})
    ContainerClient(bus, request_id="r9", timeout=5.0).get_node_status("k", "10.0.0.1")
    StorageClient(bus).get_host("10.0.0.1")
    assert [(s.timeout, s.request_id) for s in bus.sent] == [(5.0, "r9"), (None, None)]


def test_a_drain_waits_for_its_own_timeout_and_a_margin() -> None:
    bus = RecordingBus({})
    ContainerClient(bus, timeout=70.0).drain("k", "10.0.0.1", timeout=120)
    assert bus.sent[0].timeout == 120 + DRAIN_MARGIN


def test_credentials_name_the_incarnation_only_when_given() -> None:
    bus = RecordingBus(CREDS)
    StorageClient(bus).reveal_creds("10.0.0.1", uid="")
    assert bus.sent[0].params == {"address": "10.0.0.1", "uid": ""}


# -- against the real storage service: REST answers stay what they were ---------------

@pytest.fixture
def storage() -> tuple[StorageService, StorageClient]:
    bus = DirectBus()
    service = StorageService(Repository(HandlerSet(DictStore()), ReversibleBox()),
                             notify=bus.notify)
    service.ensure_default_network()
    bus.services["storage"] = service
    return service, StorageClient(bus)


def test_safe_dicts_survive_the_client_unchanged(
        storage: tuple[StorageService, StorageClient]) -> None:
    svc, client = storage
    svc.create("ContainerManagerConfig", {"name": "k", "type": "kubernetes", "options": {
        "server_url": "https://k:6443", "token": "s3cr3t"}})
    svc.create("Network", {"name": "n1", "type": "flannel_server",
                           "options": {"address": "10.1.0.1:8080"}})
    svc.create("Cluster", {"name": "c1", "network": "n1", "container_manager": "k"})
    for address in ("10.0.0.1", "10.0.0.2"):
        svc.create_host({"address": address}, {"address": address, "ssh_priv_key": KEY}, "c1")
    svc.update_host("10.0.0.1", {"status": "active"})
    svc.start_operation("ClusterDeploy", {"name": "c1", "version": "2",
                                          "options": {"max_unavailable": 1}})

    for model, key in ((Cluster, "c1"), (Network, "n1"), (ContainerManagerConfig, "k"),
                       (Host, "10.0.0.1")):
        shown = svc.get(model.kind, key)
        assert client.get(model, key).to_safe_dict() == shown, model.kind
    assert client.get(ContainerManagerConfig, "k").options["token"] == "******"
    assert client.get(Cluster, "c1").hosts == {"total": 2, "available": 1, "unavailable": 1}
    assert client.get_host("10.0.0.2").to_safe_dict() == svc.get_host("10.0.0.2")
    page = client.list_hosts(cluster="c1")
    assert [h.to_safe_dict() for h in page.items] == svc.list_hosts(cluster="c1")["items"]
    operation = client.get_operation(ClusterDeploy, "c1")
    assert operation.to_safe_dict() == svc.get_operation("ClusterDeploy", "c1")
    assert [o.to_safe_dict() for o in client.list_operations()] == [
        {k: v for k, v in o.items() if k != "kind"} for o in svc.list_operations()]
    assert client.reveal_container_manager("k").options["token"] == "s3cr3t"
    assert client.reveal_creds("10.0.0.1").to_dict() == svc.reveal_creds("10.0.0.1")
