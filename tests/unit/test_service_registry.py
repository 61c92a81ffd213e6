"""What each service exposes and listens to is declared on its methods
(@bus_method, @on_notification) and collected by the Service base: the same
methods and routing keys the services registered by hand before."""
from __future__ import annotations

from typing import Any

import pytest

from commissaire import errors
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.service import Service, bus_method, on_notification
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from commissaire_service.watcher.service import WatcherService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox

STORAGE_METHODS = {
    "get", "reveal_container_manager", "list_names", "create", "delete", "get_host",
    "list_hosts", "create_host", "delete_host", "reveal_creds", "update_host", "cluster_hosts",
    "cluster_add_host", "cluster_remove_host", "cluster_set_hosts", "start_operation",
    "get_operation", "abort_operation", "record_checks", "list_operations", "acquire_lock",
    "keepalive_lock", "release_lock", "update_operation_host", "finish_operation",
    "etcd_endpoint", "ping", "record_event", "list_events", "create_token", "list_tokens",
    "get_token", "revoke_token", "verify_token"}


class Echo(Service):
    name = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[str, dict[str, Any]]] = []

    @bus_method()
    def say(self, text: str) -> str:
        return text

    @bus_method("shout")
    def _loud(self, text: str) -> str:
        return text.upper()

    def not_exposed(self) -> str:
        return "secret"

    @on_notification("notify.a", "notify.b", pass_key=True)
    def on_any(self, key: str, **params: Any) -> None:
        self.heard.append((key, params))

    @on_notification("notify.c", private=True)
    def on_c(self, value: int) -> None:
        self.heard.append(("c", {"value": value}))


def test_declared_methods_and_notifications_are_dispatched() -> None:
    echo = Echo()
    assert echo.exposed() == ["echo.ping", "echo.say", "echo.shout"]
    assert echo.dispatch("echo.shout", {"text": "hi"}, {}) == "HI"
    with pytest.raises(errors.MethodNotFound):
        echo.dispatch("echo.not_exposed", {}, {})
    with pytest.raises(errors.MethodNotFound):
        echo.dispatch("echo._loud", {"text": "x"}, {})
    with pytest.raises(errors.InvalidRequest):
        echo.dispatch("echo.say", {"words": "x"}, {})
    echo.dispatch("notify.b", {"x": 1}, {})
    echo.dispatch("notify.c", {"value": 2}, {})
    assert echo.heard == [("notify.b", {"x": 1}), ("c", {"value": 2})]
    assert echo.routing_keys == ["echo.*", "notify.a", "notify.b"]
    assert echo.private_routing_keys == ["notify.c"]


def test_storage_exposes_what_it_did() -> None:
    storage = StorageService(Repository(HandlerSet(DictStore()), ReversibleBox()))
    assert set(storage.exposed()) == {f"storage.{m}" for m in STORAGE_METHODS}
    # over the bus an update names the incarnation it acted on
    assert storage._methods["storage.update_host"] == storage._update_host_call


def test_the_watcher_hears_host_changes_on_its_own_queue() -> None:
    watcher = WatcherService(DirectBus(), start=False)
    try:
        assert set(watcher.private_routing_keys) == {
            "notify.storage.Host.created", "notify.storage.Host.updated",
            "notify.storage.Host.deleted", "notify.watcher.heartbeat"}
        assert watcher.routing_keys == ["watcher.*"]
    finally:
        watcher.stop()


def test_clusterexec_shares_operation_notifications() -> None:
    service = ClusterExecService(DirectBus(), start=False)
    assert sorted(service.routing_keys) == sorted([
        "clusterexec.*", "notify.storage.ClusterRestart.created",
        "notify.storage.ClusterUpgrade.created", "notify.storage.ClusterDeploy.created"])
    assert service.exposed() == ["clusterexec.ping"]
