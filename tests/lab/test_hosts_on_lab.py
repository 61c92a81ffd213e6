"""Hosts made real: the all-in-one control plane against lab hosts over SSH.

Register → investigated (host key pinned, facts) → bootstrapped (flannel and
container runtime configuration written inside the host) → disassociated, or
active when the cluster has a container manager (the Kubernetes stand-in);
failures with readable reasons; the watcher's transitions; self-registration.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.k8s_standin.server import KubeStandIn
from tests.support.lab import register_from_inside
from tests.support.waiting import wait_for
from tools.lab import Lab, LabHost
from tools.stack import AllInOneStack, running

pytestmark = pytest.mark.integration

WATCH_INTERVAL = 2.0
TOKEN = "lab-token"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(reboot_time=1.0) as lab:
        yield lab


@pytest.fixture(scope="module")
def stack() -> Iterator[AllInOneStack]:
    with running(AllInOneStack(service_config={"watcher": {"interval": WATCH_INTERVAL}})) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: AllInOneStack) -> requests.Session:
    session = stack.session()
    session.base = stack.base_url  # type: ignore[attr-defined]
    return session


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeStandIn]:
    server = KubeStandIn(token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


def url(api: requests.Session, path: str) -> str:
    return api.base + path  # type: ignore[attr-defined]



def host_in(api: requests.Session, address: str, *statuses: str) -> dict[str, Any] | None:
    host = api.get(url(api, f"/host/{address}")).json()
    return host if host.get("status") in statuses else None


def register(api: requests.Session, lab: Lab, host: LabHost, cluster: str | None = None,
             key: str | None = None) -> None:
    body: dict[str, Any] = {"ssh_priv_key": key or lab.private_key_b64}
    if cluster:
        body["cluster"] = cluster
    response = api.put(url(api, f"/host/{host.address}"), json=body)
    assert response.status_code == 201, response.text


def test_a_registered_host_is_investigated_and_bootstrapped(api: requests.Session,
                                                            lab: Lab) -> None:
    (host,) = lab.start_hosts(1)
    assert api.put(url(api, "/network/labnet"), json={
        "type": "flannel_etcd", "options": {"etcd_server_url": "http://127.0.0.1:2379"}}
    ).status_code == 201
    assert api.put(url(api, "/cluster/plain"), json={"network": "labnet"}).status_code == 201
    register(api, lab, host, "plain")
    done = wait_for(lambda: host_in(api, host.address, "disassociated", "failed"), 120,
                    "host bootstrapped")
    assert done["status"] == "disassociated", done["status_reason"]
    assert done["os"] == "lab"
    assert done["cpus"] >= 1 and done["memory"] > 0 and done["space"] > 0
    assert done["host_key_fingerprint"] == host.host_key_fingerprint()
    assert done["bootstrapped"] is True
    # What bootstrap wrote inside the host, and only there.
    flannel = host.read_file("/etc/sysconfig/flanneld")
    assert "http://127.0.0.1:2379" in flannel
    assert "--bip=${FLANNEL_SUBNET}" in host.read_file(
        "/etc/systemd/system/docker.service.d/10-commissaire-flannel.conf")
    installs = [" ".join(r["argv"]) for r in host.requests() if r["cmd"] == "apt-get"]
    assert any("docker.io" in i for i in installs) and any("flannel" in i for i in installs)
    status = api.get(url(api, f"/host/{host.address}/status")).json()
    assert status["host"]["status"] == "disassociated"


def test_a_wrong_key_fails_with_the_reason(api: requests.Session, lab: Lab,
                                          tmp_path: Path) -> None:
    (host,) = lab.start_hosts(1)
    key_file = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)],
                   check=True)
    key_text = key_file.read_text()
    register(api, lab, host, key=base64.b64encode(key_text.encode()).decode())
    failed = wait_for(lambda: host_in(api, host.address, "failed"), 60, "host failed")
    assert "authentication" in failed["status_reason"].lower()
    status = api.get(url(api, f"/host/{host.address}/status")).json()
    assert status["host"]["status_reason"] == failed["status_reason"]


def test_the_watcher_follows_a_host_down_and_up(api: requests.Session, lab: Lab) -> None:
    (host,) = lab.start_hosts(1)
    register(api, lab, host)
    wait_for(lambda: host_in(api, host.address, "disassociated"), 120, "host bootstrapped")
    host.stop()
    stopped = time.monotonic()
    failed = wait_for(lambda: host_in(api, host.address, "failed"), 4 * WATCH_INTERVAL + 10,
                      "stopped host failed")
    took = time.monotonic() - stopped
    assert took <= 2 * WATCH_INTERVAL + 3, f"failed only after {took:.1f} s"
    assert "cannot reach" in failed["status_reason"]
    host.start()
    back = wait_for(lambda: host_in(api, host.address, "disassociated"), 4 * WATCH_INTERVAL + 10,
                    "host back")
    assert back["status_reason"] == "" and back["last_check"]


def test_a_changed_host_key_is_refused(api: requests.Session, lab: Lab) -> None:
    (host,) = lab.start_hosts(1)
    register(api, lab, host)
    wait_for(lambda: host_in(api, host.address, "disassociated"), 120, "host bootstrapped")
    host.change_host_key()
    failed = wait_for(lambda: host_in(api, host.address, "failed"), 4 * WATCH_INTERVAL + 10,
                      "host with a new key refused")
    assert "host key" in failed["status_reason"] and "refusing" in failed["status_reason"]


def test_a_deleted_host_is_no_longer_watched(api: requests.Session, lab: Lab) -> None:
    (host,) = lab.start_hosts(1)
    register(api, lab, host)
    wait_for(lambda: host_in(api, host.address, "disassociated"), 120, "host bootstrapped")
    assert api.delete(url(api, f"/host/{host.address}")).status_code == 200
    time.sleep(WATCH_INTERVAL * 2 + 1)
    assert api.get(url(api, f"/host/{host.address}")).status_code == 404
    watcher = api.get(url(api, "/status")).json()["services"]["watcher"]
    assert host.address not in json.dumps(watcher)


def test_a_host_registers_itself(api: requests.Session, lab: Lab, stack: AllInOneStack) -> None:
    """From inside a lab host, as its first boot would: no address in the body."""
    (host,) = lab.start_hosts(1)
    assert api.put(url(api, "/cluster/selfreg"), json={}).status_code == 201
    answer = register_from_inside(host, stack.port, stack.auth,
                                  {"ssh_priv_key": lab.private_key_b64, "cluster": "selfreg"})
    assert answer.startswith("201"), answer
    wait_for(lambda: host_in(api, host.address, "disassociated"), 120, "self-registered host up")
    assert api.get(url(api, "/cluster/selfreg/hosts")).json() == [host.address]


def test_a_host_in_a_kubernetes_cluster_becomes_an_active_node(
        api: requests.Session, lab: Lab, kube: KubeStandIn) -> None:
    (host,) = lab.start_hosts(1)
    assert api.put(url(api, "/containermanager/kube"), json={
        "type": "kubernetes", "options": {"server_url": kube.url, "token": TOKEN}}
    ).status_code == 201
    assert api.put(url(api, "/cluster/kubed"), json={"container_manager": "kube"}
                   ).status_code == 201
    register(api, lab, host, "kubed")
    active = wait_for(lambda: host_in(api, host.address, "active", "failed"), 120,
                      "host active")
    assert active["status"] == "active", active["status_reason"]
    assert host.file_exists("/etc/systemd/system/kubelet.service.d/20-commissaire.conf")
    kubeconfig = host.read_file("/var/lib/kubelet/kubeconfig")
    assert kube.url in kubeconfig
    status = api.get(url(api, f"/host/{host.address}/status")).json()
    assert status["type"] == "host_and_container_manager"
    assert status["container_manager"]["status"] not in ("unknown", "absent"), status


def test_a_host_without_python_fails_with_how_to_install_it(api: requests.Session, lab: Lab) -> None:
    """Fedora CoreOS ships no python, and Ansible's modules need it."""
    (host,) = lab.start_hosts(1)
    hidden = host.run("mkdir -p /root/hidden-python && mv /usr/bin/python3* /root/hidden-python/ "
                      "&& ! command -v python3")
    assert hidden.returncode == 0, hidden.stderr
    register(api, lab, host)
    failed = wait_for(lambda: host_in(api, host.address, "failed", "disassociated"), 60, "host failed")
    assert failed["status_reason"] == (
        f"task 'Check python3 is on the host' failed on {host.address}: no python3 on the host: "
        "Ansible needs it to manage the host; install python3 (on Fedora CoreOS: "
        "rpm-ostree install --apply-live python3)")
    assert failed["os"] == ""  # no facts: nothing ran on the host but the question
