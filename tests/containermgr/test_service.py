"""The container manager service against the Kubernetes stand-in, over real HTTP."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from commissaire import errors
from commissaire_service.containermgr.kube import base_url
from commissaire_service.containermgr.service import ContainerManagerService
from tests.containermgr.fakes import TOKEN, FakeBus, closed_port
from tests.k8s_standin.server import KubeStandIn

NODE = "10.1.2.3"
NODE_PATH = f"/api/v1/nodes/{NODE}"

# -- registration and status ------------------------------------------------------


def test_register_node_is_idempotent(service: ContainerManagerService, k8s: str,
                                     standin: KubeStandIn) -> None:
    first = service.register_node(k8s, NODE)
    assert first == {"container_manager": "k8s", "type": "kubernetes", "node": NODE,
                     "registered": True, "created": True}
    assert standin.node(NODE) is not None

    again = service.register_node(k8s, NODE)
    assert again["registered"] is True and again["created"] is False
    assert standin.count("POST", "/api/v1/nodes") == 2


def test_node_status_follows_the_ready_condition(service: ContainerManagerService, k8s: str,
                                                 standin: KubeStandIn) -> None:
    absent = service.get_node_status(k8s, NODE)
    assert absent["status"] == "absent" and absent["ready"] is False
    assert service.node_ready(k8s, NODE) is False

    service.register_node(k8s, NODE)  # no kubelet has posted a status yet
    assert service.get_node_status(k8s, NODE)["status"] == "Unknown"

    standin.set_ready(NODE, True)
    status = service.get_node_status(k8s, NODE)
    assert status["status"] == "Ready" and status["ready"] is True
    assert status["unschedulable"] is False
    assert status["conditions"][0]["type"] == "Ready"
    assert status["conditions"][0]["reason"] == "KubeletReady"
    assert service.node_ready(k8s, NODE) is True

    standin.set_ready(NODE, False)
    assert service.get_node_status(k8s, NODE)["status"] == "NotReady"
    assert service.node_ready(k8s, NODE) is False

    standin.set_ready(NODE, "Unknown")
    assert service.get_node_status(k8s, NODE)["status"] == "Unknown"
    assert service.node_ready(k8s, NODE) is False


def test_addresses_are_validated(service: ContainerManagerService, k8s: str) -> None:
    with pytest.raises(errors.ValidationError, match="address"):
        service.register_node(k8s, "not an address; rm -rf /")
    with pytest.raises(errors.ValidationError, match="IPv6"):
        service.register_node(k8s, "fd00::1")
    with pytest.raises(errors.ValidationError, match="container_manager"):
        service.register_node("../etc", NODE)


def test_unknown_container_manager_is_not_found(service: ContainerManagerService) -> None:
    with pytest.raises(errors.NotFound, match="nope"):
        service.get_node_status("nope", NODE)


# -- cordon and uncordon ------------------------------------------------------------


def test_cordon_and_uncordon_patch_the_node(service: ContainerManagerService, k8s: str,
                                            standin: KubeStandIn) -> None:
    standin.add_node(NODE)
    done = service.cordon(k8s, NODE)
    assert done["unschedulable"] is True and done["changed"] is True
    assert standin.node(NODE)["spec"]["unschedulable"] is True  # type: ignore[index]
    assert service.get_node_status(k8s, NODE)["unschedulable"] is True

    assert service.cordon(k8s, NODE)["changed"] is False  # already cordoned: no write
    assert standin.count("PATCH", NODE_PATH) == 1

    done = service.uncordon(k8s, NODE)
    assert done["unschedulable"] is False and done["changed"] is True
    assert "unschedulable" not in standin.node(NODE)["spec"]  # type: ignore[index]
    assert service.uncordon(k8s, NODE)["changed"] is False


def test_cordon_patch_keeps_a_concurrent_change(service: ContainerManagerService, k8s: str,
                                                standin: KubeStandIn) -> None:
    standin.add_node(NODE)
    standin.before("PATCH", NODE_PATH, lambda: standin.touch_node(NODE, "team", "blue"))
    service.cordon(k8s, NODE)
    node = standin.node(NODE)
    assert node is not None
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["labels"]["team"] == "blue"


def test_put_fallback_retries_on_a_stale_resource_version(
        service: ContainerManagerService, k8s: str, standin: KubeStandIn) -> None:
    """A server that refuses the patch gets GET+PUT; a concurrent writer makes the
    first PUT stale (409), so the service reads again and retries."""
    standin.add_node(NODE)
    standin.refuse_patch = True
    standin.before("PUT", NODE_PATH, lambda: standin.touch_node(NODE, "team", "blue"))

    assert service.cordon(k8s, NODE)["changed"] is True
    node = standin.node(NODE)
    assert node is not None
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["labels"]["team"] == "blue"  # the other writer's change kept
    assert standin.count("PUT", NODE_PATH) == 2

    standin.before("PUT", NODE_PATH, lambda: standin.touch_node(NODE, "team", "green"))
    assert service.uncordon(k8s, NODE)["changed"] is True
    node = standin.node(NODE)
    assert node is not None
    assert "unschedulable" not in node["spec"]
    assert node["metadata"]["labels"]["team"] == "green"
    assert standin.count("PUT", NODE_PATH) == 4
    assert standin.count("PATCH", NODE_PATH) == 1  # refused once, not tried again


def test_put_gives_up_when_the_node_keeps_changing(service: ContainerManagerService, k8s: str,
                                                   standin: KubeStandIn) -> None:
    standin.add_node(NODE)
    standin.refuse_patch = True
    standin.before("PUT", NODE_PATH, lambda: standin.touch_node(NODE), times=100)
    with pytest.raises(errors.ContainerManagerError, match="kept changing"):
        service.cordon(k8s, NODE)
    assert not standin.node(NODE)["spec"].get("unschedulable")  # type: ignore[index]


def test_cordon_of_a_missing_node_is_not_found(service: ContainerManagerService,
                                               k8s: str) -> None:
    with pytest.raises(errors.NotFound, match=NODE):
        service.cordon(k8s, NODE)
    with pytest.raises(errors.NotFound):
        service.drain(k8s, NODE, timeout=1)


# -- drain ---------------------------------------------------------------------------


def _populate(standin: KubeStandIn) -> None:
    standin.add_node(NODE)
    standin.add_node("10.1.2.4")
    standin.add_pod("app", "web-1", NODE)
    standin.add_pod("app", "bare", NODE, owner_kind=None)
    standin.add_pod("app", "job-1", NODE, owner_kind="Job", phase="Succeeded")
    standin.add_pod("kube-system", "fluentd-x", NODE, owner_kind="DaemonSet")
    standin.add_pod("kube-system", f"etcd-{NODE}", NODE, mirror=True)
    standin.add_pod("app", "web-2", "10.1.2.4")


def test_drain_evicts_pods_and_skips_daemonsets_and_mirror_pods(
        service: ContainerManagerService, k8s: str, standin: KubeStandIn) -> None:
    _populate(standin)
    result = service.drain(k8s, NODE, timeout=10)

    assert result["evicted"] == ["app/bare", "app/job-1", "app/web-1"]
    assert result["skipped"] == ["kube-system/etcd-10.1.2.3 (mirror pod)",
                                 "kube-system/fluentd-x (DaemonSet)"]
    assert result["unschedulable"] is True
    assert standin.node(NODE)["spec"]["unschedulable"] is True  # type: ignore[index]
    assert standin.pods_on(NODE) == ["kube-system/etcd-10.1.2.3", "kube-system/fluentd-x"]
    assert standin.pods_on("10.1.2.4") == ["app/web-2"]
    assert standin.count("POST", "/api/v1/namespaces/app/pods/web-1/eviction") == 1
    assert standin.count("POST", "/api/v1/namespaces/kube-system/pods/fluentd-x/eviction") == 0


def test_drain_waits_until_evicted_pods_are_gone(service: ContainerManagerService, k8s: str,
                                                 standin: KubeStandIn) -> None:
    _populate(standin)
    standin.deletion_grace = 0.4
    started = time.monotonic()
    result = service.drain(k8s, NODE, timeout=10)
    assert time.monotonic() - started >= 0.4
    assert result["evicted"] == ["app/bare", "app/job-1", "app/web-1"]
    assert standin.pods_on(NODE) == ["kube-system/etcd-10.1.2.3", "kube-system/fluentd-x"]


def test_drain_names_the_pod_a_disruption_budget_blocks(
        service: ContainerManagerService, k8s: str, standin: KubeStandIn) -> None:
    _populate(standin)
    standin.add_pod("db", "postgres-0", NODE, owner_kind="StatefulSet")
    standin.block_eviction("db", "postgres-0", pdb="postgres-pdb")

    started = time.monotonic()
    with pytest.raises(errors.ContainerManagerError) as caught:
        service.drain(k8s, NODE, timeout=0.6)
    assert 0.6 <= time.monotonic() - started < 5
    message = caught.value.description
    assert "db/postgres-0" in message and "PodDisruptionBudget" in message
    assert "HTTP 429" in message
    assert "postgres-pdb" not in message  # the API server's own words are not passed on
    assert caught.value.details["blocking_pods"] == ["db/postgres-0"]
    # The others went; the blocked one was retried and stays; the node stays cordoned.
    assert "db/postgres-0" in standin.pods_on(NODE) and "app/web-1" not in standin.pods_on(NODE)
    assert standin.count("POST", "/api/v1/namespaces/db/pods/postgres-0/eviction") > 1
    assert standin.node(NODE)["spec"]["unschedulable"] is True  # type: ignore[index]


def test_drain_retries_until_the_budget_allows(service: ContainerManagerService, k8s: str,
                                               standin: KubeStandIn) -> None:
    _populate(standin)
    standin.add_pod("db", "postgres-0", NODE, owner_kind="StatefulSet")
    standin.block_eviction("db", "postgres-0")
    timer = threading.Timer(0.3, standin.unblock_eviction, ("db", "postgres-0"))
    timer.start()
    try:
        result = service.drain(k8s, NODE, timeout=10)
    finally:
        timer.cancel()
    assert "db/postgres-0" in result["evicted"]
    assert standin.pod("db", "postgres-0") is None


def test_drain_timeout_must_be_positive(service: ContainerManagerService, k8s: str) -> None:
    with pytest.raises(errors.ValidationError, match="timeout"):
        service.drain(k8s, NODE, timeout=0)


# -- credentials, reachability, configuration ------------------------------------------


def test_wrong_token_is_refused_without_showing_it(
        service: ContainerManagerService, bus: FakeBus, standin: KubeStandIn,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-0a9f8e7d"
    bus.add("k8s", "kubernetes", server_url=standin.url, token=wrong)
    for call in (service.register_node, service.get_node_status, service.cordon):
        with pytest.raises(errors.ContainerManagerError) as caught:
            call("k8s", NODE)
        text = str(caught.value) + repr(caught.value.details)
        assert "refused our credentials" in text and "HTTP 401" in text
        assert wrong not in text
    assert wrong not in caplog.text


def test_missing_token_is_refused(service: ContainerManagerService, bus: FakeBus,
                                  standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=standin.url)
    with pytest.raises(errors.ContainerManagerError, match="refused our credentials"):
        service.node_ready("k8s", NODE)


def test_unreachable_api_server_is_named(service: ContainerManagerService,
                                         bus: FakeBus) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    bus.add("gone", "openshift", server_url=url + "/", token=TOKEN)
    with pytest.raises(errors.ContainerManagerError) as caught:
        service.register_node("gone", NODE)
    assert caught.value.description == "container manager 'gone': cannot connect to its API server"


def test_api_suffix_and_apiserver_option(service: ContainerManagerService, bus: FakeBus,
                                         standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", apiserver=standin.url + "/api/v1/", token=TOKEN)
    assert service.register_node("k8s", NODE)["created"] is True
    assert base_url("https://k8s.example:6443/api/") == "https://k8s.example:6443"
    assert base_url("https://k8s.example:6443/api") == "https://k8s.example:6443"
    assert base_url("https://proxy.example/k8s/") == "https://proxy.example/k8s"
    assert base_url("https://k8s.example:6443") == "https://k8s.example:6443"


def test_a_changed_record_takes_effect(service: ContainerManagerService, bus: FakeBus,
                                       standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=standin.url, token="stale-token")
    with pytest.raises(errors.ContainerManagerError):
        service.register_node("k8s", NODE)
    bus.add("k8s", "kubernetes", server_url=standin.url, token=TOKEN)
    assert service.register_node("k8s", NODE)["created"] is True
    cached = service._managers["k8s"][1]
    service.get_node_status("k8s", NODE)
    assert service._managers["k8s"][1] is cached  # same record: same client


def test_bad_options_are_validation_errors(service: ContainerManagerService,
                                           bus: FakeBus) -> None:
    bus.add("k8s", "kubernetes", server_url="https://127.0.0.1:1", insecure_skip_verify="yes")
    with pytest.raises(errors.ValidationError, match="insecure_skip_verify"):
        service.get_node_status("k8s", NODE)
    bus.add("k8s", "kubernetes", server_url="ftp://example")
    with pytest.raises(errors.ValidationError, match="server_url"):
        service.get_node_status("k8s", NODE)
    bus.add("k8s", "kubernetes", server_url="https://127.0.0.1:1",
            certificate_authority="/nonexistent/ca.crt")
    with pytest.raises(errors.ContainerManagerError,
                       match="options.certificate_authority must name a file under"):
        service.get_node_status("k8s", NODE)


def test_trivial_succeeds_without_network(service: ContainerManagerService, bus: FakeBus,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the trivial container manager must not use the network")

    monkeypatch.setattr(requests.Session, "request", no_network)
    bus.add("none", "trivial")
    assert service.register_node("none", NODE)["registered"] is True
    status = service.get_node_status("none", NODE)
    assert status["status"] == "ok" and status["ready"] is True
    assert status["type"] == "trivial"
    assert service.node_ready("none", NODE) is True
    assert service.cordon("none", NODE)["unschedulable"] is True
    assert service.uncordon("none", NODE)["unschedulable"] is False
    assert service.drain("none", NODE, timeout=1)["evicted"] == []


def test_methods_are_exposed_by_name(service: ContainerManagerService, k8s: str,
                                     standin: KubeStandIn) -> None:
    assert service.exposed() == sorted(f"container.{m}" for m in (
        "ping", "register_node", "get_node_status", "node_ready", "cordon",
        "uncordon", "drain"))
    standin.add_node(NODE)
    assert service.dispatch("container.node_ready",
                            {"container_manager": k8s, "address": NODE}, {}) is True
    with pytest.raises(errors.InvalidRequest):
        service.dispatch("container.drain", {"container_manager": k8s}, {})
    assert service.ping()["service"] == "container"


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture
def tls_standin() -> Iterator[KubeStandIn]:
    server = KubeStandIn(token=TOKEN, tls=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_tls_with_a_ca_file_or_pem_text(service: ContainerManagerService, bus: FakeBus,
                                        tls_standin: KubeStandIn) -> None:
    assert tls_standin.pki is not None
    bus.add("by-path", "kubernetes", server_url=tls_standin.url, token=TOKEN,
            certificate_authority=str(tls_standin.pki.ca_cert))
    assert service.register_node("by-path", NODE)["created"] is True
    bus.add("by-pem", "kubernetes", server_url=tls_standin.url, token=TOKEN,
            certificate_authority=tls_standin.pki.ca_pem)
    assert service.register_node("by-pem", NODE)["created"] is False


def test_tls_without_the_ca_fails_naming_the_server(service: ContainerManagerService,
                                                    bus: FakeBus,
                                                    tls_standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=tls_standin.url, token=TOKEN)
    with pytest.raises(errors.ContainerManagerError) as caught:
        service.get_node_status("k8s", NODE)
    assert "'k8s'" in caught.value.description
    assert "certificate is not trusted" in caught.value.description


def test_tls_insecure_skip_verify(service: ContainerManagerService, bus: FakeBus,
                                  tls_standin: KubeStandIn) -> None:
    bus.add("k8s", "kubernetes", server_url=tls_standin.url, token=TOKEN,
            insecure_skip_verify=True)
    assert service.get_node_status("k8s", NODE)["status"] == "absent"


def test_tls_client_certificate_instead_of_a_token(service: ContainerManagerService,
                                                   bus: FakeBus,
                                                   tls_standin: KubeStandIn) -> None:
    pki = tls_standin.pki
    assert pki is not None
    bus.add("k8s", "kubernetes", server_url=tls_standin.url,
            certificate_authority=str(pki.ca_cert), client_certificate=str(pki.client_cert),
            client_key=str(pki.client_key))
    assert service.register_node("k8s", NODE)["created"] is True
    bus.add("nocert", "kubernetes", server_url=tls_standin.url,
            certificate_authority=str(pki.ca_cert))
    with pytest.raises(errors.ContainerManagerError, match="refused our credentials"):
        service.register_node("nocert", NODE)
