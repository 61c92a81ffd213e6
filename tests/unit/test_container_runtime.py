"""A cluster's `container_runtime`: through the REST API (real storage service
behind a direct bus), the storage service on its own (it enforces the rules where
the container manager's type is read), commctl over HTTP, and into the bootstrap's
host variables."""
from __future__ import annotations

import json
from typing import Any

import pytest
from falcon import testing

from commissaire import errors
from commissaire.config import ServerConfig
from commissaire_http.app import create_app
from commissaire_service.investigator.service import InvestigatorService
from tests.commctl.conftest import Commctl, commctl, server  # noqa: F401  (fixtures)
from tests.unit.fakes import DictStore
from tests.unit.test_api import USERS, client, get, put, store  # noqa: F401  (fixtures)
from tests.unit.test_investigator import add_host, world  # noqa: F401  (fixture)

DOCKERSHIM = "Kubernetes removed dockershim in 1.24: use containerd or cri-o"
OPENSHIFT = "OpenShift nodes run CRI-O only: use cri-o (or leave it empty)"
MANAGERS = {
    "k8s": {"type": "kubernetes", "options": {"server_url": "https://127.0.0.1:6443"}},
    "ocp": {"type": "openshift", "options": {"server_url": "https://127.0.0.1:8443"}},
    "triv": {"type": "trivial"},
}
HOSTILE = ["{{ lookup('pipe','id') }}", "; id", "$(id)", "docker\n", "containerd ", "Docker",
           "cri_o", "crio", "docker; id", 5, True, ["docker"], {"x": "docker"}, None]


def _managers(client: testing.TestClient) -> None:  # noqa: F811
    for name, body in MANAGERS.items():
        assert put(client, f"/api/v0/containermanager/{name}", body).status_code == 201


# (container manager, runtime) -> None (accepted) or the reason of the 400.
RULES: list[tuple[str, str, str | None]] = [
    ("", "", None), ("", "docker", None), ("", "containerd", None), ("", "cri-o", None),
    ("triv", "docker", None), ("triv", "containerd", None), ("triv", "cri-o", None),
    ("k8s", "", None), ("k8s", "containerd", None), ("k8s", "cri-o", None),
    ("k8s", "docker", DOCKERSHIM),
    ("ocp", "", None), ("ocp", "cri-o", None),
    ("ocp", "docker", "Kubernetes removed dockershim in 1.24, and " + OPENSHIFT),
    ("ocp", "containerd", OPENSHIFT),
]


@pytest.mark.parametrize("manager, runtime, refused", RULES)
def test_the_api_applies_the_rules(
        client: testing.TestClient, store: DictStore,  # noqa: F811
        manager: str, runtime: str, refused: str | None) -> None:
    _managers(client)
    body = {"container_manager": manager, "container_runtime": runtime}
    before = dict(store.data)
    answer = put(client, "/api/v0/cluster/c1", body)
    if refused is None:
        assert answer.status_code == 201, answer.text
        assert answer.json["container_runtime"] == runtime
        shown = get(client, "/api/v0/cluster/c1").json
        assert (shown["container_manager"], shown["container_runtime"]) == (manager, runtime)
        return
    assert answer.status_code == 400
    assert answer.json["error"]["field"] == "container_runtime"
    assert answer.json["error"]["description"] == f"container_runtime: {refused}"
    assert store.data == before
    assert get(client, "/api/v0/cluster/c1").status_code == 404


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_other_values_are_refused_naming_the_field(
        client: testing.TestClient, store: DictStore, value: Any) -> None:  # noqa: F811
    before = dict(store.data)
    answer = put(client, "/api/v0/cluster/c1", {"container_runtime": value})
    assert answer.status_code == 400, answer.text
    assert answer.json["error"]["field"] == "container_runtime"
    if isinstance(value, str):
        assert answer.json["error"]["description"] == (
            "container_runtime: must be docker, containerd or cri-o, or empty for the OS "
            "profile's default; with a kubernetes container manager containerd or cri-o, "
            "with openshift cri-o")
    assert store.data == before


def test_a_re_put_is_idempotent_only_with_the_same_runtime(
        client: testing.TestClient) -> None:  # noqa: F811
    _managers(client)
    body = {"container_manager": "k8s", "container_runtime": "cri-o"}
    assert put(client, "/api/v0/cluster/c1", body).status_code == 201
    again = put(client, "/api/v0/cluster/c1", body)
    assert again.status_code == 200 and again.json["container_runtime"] == "cri-o"
    # What a GET shows may be sent back as it is.
    shown = get(client, "/api/v0/cluster/c1").json
    assert put(client, "/api/v0/cluster/c1", shown).status_code == 200
    other = put(client, "/api/v0/cluster/c1", {**body, "container_runtime": "containerd"})
    assert other.status_code == 409
    assert put(client, "/api/v0/cluster/c1", {"container_manager": "k8s"}).status_code == 409
    # An invalid re-PUT is said to be invalid, not a mere conflict.
    bad = put(client, "/api/v0/cluster/c1", {**body, "container_runtime": "docker"})
    assert (bad.status_code, bad.json["error"]["field"]) == (400, "container_runtime")
    assert get(client, "/api/v0/cluster/c1").json["container_runtime"] == "cri-o"


def test_the_storage_service_enforces_without_the_api(world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bus, storage, recorder = world
    storage.create("ContainerManagerConfig", {"name": "k8s", **MANAGERS["k8s"]})
    with pytest.raises(errors.ValidationError) as caught:
        bus.call("storage.create", {"kind": "Cluster", "record": {
            "name": "c1", "container_manager": "k8s", "container_runtime": "docker"}})
    assert caught.value.field == "container_runtime"
    assert caught.value.description == f"container_runtime: {DOCKERSHIM}"
    with pytest.raises(errors.ValidationError, match="container_runtime: must be docker"):
        bus.call("storage.create", {"kind": "Cluster", "record": {
            "name": "c1", "container_runtime": "$(id)"}})
    assert storage.list_names("Cluster") == []


def test_a_cluster_stored_before_the_field_reads_as_the_default(world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A record written by the previous version (no container_runtime key)."""
    bus, storage, recorder = world
    api = testing.TestClient(create_app(ServerConfig(authentication_plugins=[
        {"name": "commissaire_http.authentication.httpbasicauth", "users": USERS}]), bus))
    assert put(api, "/api/v0/cluster/old", {}).status_code == 201
    dict_store = storage.repo.handlers.handlers[0]
    value, revision = dict_store.data["clusters/old"]
    assert value.pop("container_runtime") == ""
    dict_store.data["clusters/old"] = (value, revision)
    assert get(api, "/api/v0/cluster/old").json["container_runtime"] == ""
    assert put(api, "/api/v0/cluster/old", {"network": "default"}).status_code == 200
    # And the investigator hands the bootstrap the profile's default.
    add_host(storage, "127.0.3.1", cluster="old")
    svc = InvestigatorService(bus)
    try:
        svc.run_batch(["127.0.3.1"])
    finally:
        svc.stop()
    (_playbook, targets), = recorder.runs
    assert targets[0].hostvars["commissaire_container_runtime"] == ""


@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
def test_the_bootstrap_gets_the_clusters_runtime(world, runtime: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bus, storage, recorder = world
    storage.create("ContainerManagerConfig", {"name": "ocp", **MANAGERS["ocp"]})
    storage.create("Cluster", {"name": "plain", "container_runtime": runtime})
    storage.create("Cluster", {"name": "ocp1", "container_manager": "ocp"})
    for address, cluster in (("127.0.3.2", "plain"), ("127.0.3.3", "ocp1")):
        add_host(storage, address, cluster=cluster)
    svc = InvestigatorService(bus)
    try:
        svc.run_batch(["127.0.3.2", "127.0.3.3"])
    finally:
        svc.stop()
    (_playbook, targets), = recorder.runs
    got = {t.address: t.hostvars["commissaire_container_runtime"] for t in targets}
    assert got == {"127.0.3.2": runtime, "127.0.3.3": ""}


def test_the_openapi_document_shows_the_field(client: testing.TestClient) -> None:  # noqa: F811
    doc = client.simulate_get("/api/v0/openapi.json").json
    operation = doc["paths"]["/api/v0/cluster/{name}"]
    body = operation["put"]["requestBody"]["content"]["application/json"]["schema"]
    field = body["properties"]["container_runtime"]
    assert field["type"] == "string" and field["pattern"] == "^(?:(?:docker|containerd|cri-o)?)$"
    assert "kubernetes container manager containerd or cri-o" in field["description"]
    shown = operation["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert shown["properties"]["container_runtime"]["enum"] == ["", "docker", "containerd",
                                                                "cri-o"]
    assert "container_runtime" in shown["required"]


def test_commctl_creates_and_shows_the_runtime(commctl: Commctl) -> None:  # noqa: F811
    assert commctl("container_manager", "create", "k8s", "kubernetes", "-o",
                   json.dumps({"server_url": "https://127.0.0.1:6443"})).code == 0
    created = commctl("cluster", "create", "-m", "k8s", "--container-runtime", "cri-o", "c1")
    assert (created.code, created.out) == (0, "Created cluster c1.\n"), created.err
    table = commctl("cluster", "get", "c1").out
    assert "container_runtime: cri-o" in table.replace("  ", " ").replace("  ", " ")
    assert commctl("-o", "json", "cluster", "get", "c1").json["container_runtime"] == "cri-o"
    refused = commctl("cluster", "create", "-m", "k8s", "-r", "docker", "c2")
    assert refused.code == 8
    assert refused.err == f"commctl: container_runtime: {DOCKERSHIM}\n"
    assert commctl("-o", "json", "cluster", "list").json == ["c1"]
    plain = commctl("cluster", "create", "c3")
    assert plain.code == 0
    assert "default (the OS profile's)" in commctl("cluster", "get", "c3").out
