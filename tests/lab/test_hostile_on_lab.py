"""Hostile values end to end, on lab hosts: nothing sent by an API caller, kept in
the store or reported by a managed host runs on the controller or on a host.

Every hostile value is a template that would create a marker file, or shell text
that would; each test checks the marker exists neither on the controller nor in
the host. Two levels:

- through the API (the all-in-one): a host reporting a hostile OS; hostile
  remote_user, network and deploy values — which the API may refuse outright
  (400), or which must then fail harmlessly;
- through commissaire.ansible.runner straight onto a lab host, as values already
  in the store would arrive (no API validation in the way): the playbooks and
  the runner on their own.
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from commissaire.ansible import runner
from tests.support.waiting import wait_for
from tools.lab import Lab, LabHost
from tools.stack import AllInOneStack, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(reboot_time=1.0) as lab:
        yield lab


@pytest.fixture(scope="module")
def stack() -> Iterator[AllInOneStack]:
    with running(AllInOneStack(service_config={"watcher": {"interval": 30}})) as stack:
        yield stack


class Api:
    def __init__(self, stack: AllInOneStack) -> None:
        self.session = stack.session()
        self.base = stack.base_url

    def put(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.put(self.base + path, json=body, timeout=30)

    def get(self, path: str) -> dict[str, Any]:
        return dict(self.session.get(self.base + path, timeout=30).json())


@pytest.fixture(scope="module")
def api(stack: AllInOneStack) -> Api:
    return Api(stack)


#: What the shell-injection values below would create inside a host (/root survives
#: the lab's reboots, /tmp does not).
SHELL_MARKERS = ("/tmp/pwned", "/root/pwned")


class Markers:
    """Paths a hostile value would create; checked on the controller and in hosts."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.paths: list[Path] = []

    def new(self) -> Path:
        path = self.dir / f"pwned-{uuid.uuid4().hex[:8]}"
        self.paths.append(path)
        return path

    def lookup(self) -> str:
        return f"{{{{ lookup('pipe', 'touch {self.new()}') }}}}"

    def assert_none(self, *hosts: LabHost) -> None:
        for path in self.paths:
            assert not path.exists(), f"ran on the controller: {path}"
            for host in hosts:
                assert not host.file_exists(str(path)), f"ran on {host.address}: {path}"
        for host in hosts:
            for inside in SHELL_MARKERS:
                assert not host.file_exists(inside), f"ran on {host.address}: {inside}"


@pytest.fixture
def markers(tmp_path: Path) -> Markers:
    return Markers(tmp_path)


def settled(api: Api, address: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for(lambda: (h := api.get(f"/host/{address}")).get("status") in (
        "disassociated", "active", "failed") and h, timeout, f"{address} settled")


# -- through the API ------------------------------------------------------------------------

@pytest.mark.parametrize("reported", ["{{ lookup('pipe', 'touch MARKER') }}",
                                      "../../../../tmp/evil", "lab\\nID=debian"])
def test_a_host_reporting_a_hostile_os_fails_as_unsupported(reported: str, api: Api, lab: Lab,
                                                            markers: Markers) -> None:
    (host,) = lab.start_hosts(1)
    reported = reported.replace("MARKER", str(markers.new()))
    # A host is whatever its root says: not a lab host, and a hostile os-release ID.
    host.run("rm -f /etc/commissaire-lab")
    host.write_file("/etc/os-release", f'PRETTY_NAME="x"\nID="{reported}"\nVERSION_ID="1"\n')
    response = api.put(f"/host/{host.address}", {"ssh_priv_key": lab.private_key_b64})
    assert response.status_code == 201, response.text
    failed = settled(api, host.address)
    assert failed["status"] == "failed"
    assert failed["status_reason"].startswith("unsupported OS: "), failed["status_reason"]
    assert "\n" not in failed["status_reason"] and "{{" not in failed["status_reason"]
    assert failed["os"] == ""  # the raw text is never stored
    assert not host.file_exists("/etc/sysconfig/flanneld")  # never bootstrapped
    markers.assert_none(host)


def test_hostile_api_values_are_refused_or_stay_text(api: Api, lab: Lab,
                                                    markers: Markers) -> None:
    """remote_user, the network's etcd URL and flannel key: a 400, or a host that
    fails without anything run and without a line added to its files."""
    hosts = lab.start_hosts(2)
    network = {"type": "flannel_etcd", "options": {
        "etcd_server_url": markers.lookup(),
        "flannel_key": "/atomic.io/network\nFLANNEL_OPTIONS=--evil"}}
    if api.put("/network/hostilenet", network).status_code == 201:
        assert api.put("/cluster/hostile", {"network": "hostilenet"}).status_code == 201
        body = {"ssh_priv_key": lab.private_key_b64, "cluster": "hostile"}
        assert api.put(f"/host/{hosts[0].address}", body).status_code == 201
        failed = settled(api, hosts[0].address)
        assert failed["status"] == "failed"
        assert "cannot be written on the host" in failed["status_reason"]
        assert not hosts[0].file_exists("/etc/sysconfig/flanneld")
    response = api.put(f"/host/{hosts[1].address}", {"ssh_priv_key": lab.private_key_b64,
                                                     "remote_user": markers.lookup()})
    if response.status_code == 201:
        failed = settled(api, hosts[1].address)
        assert failed["status"] == "failed"
    else:
        assert response.status_code == 400, response.text
    markers.assert_none(*hosts)


@pytest.mark.parametrize("version", ["7.2; touch /root/pwned", "$(touch /root/pwned)",
                                     "{{ lookup('pipe', 'touch MARKER') }}", "7.2\nreboot"])
def test_a_hostile_deploy_version_is_refused_or_never_reaches_a_shell(
        version: str, api: Api, lab: Lab, markers: Markers) -> None:
    (host,) = lab.start_hosts(1)
    cluster = f"dep{uuid.uuid4().hex[:6]}"
    assert api.put(f"/cluster/{cluster}", {}).status_code == 201
    body = {"ssh_priv_key": lab.private_key_b64, "cluster": cluster}
    assert api.put(f"/host/{host.address}", body).status_code == 201
    assert settled(api, host.address)["status"] == "disassociated"
    started = time.time()
    version = version.replace("MARKER", str(markers.new()))
    response = api.put(f"/cluster/{cluster}/deploy", {"version": version})
    if response.status_code == 201:
        op = wait_for(lambda: (o := api.get(f"/cluster/{cluster}/deploy"))["status"]
                      != "in_process" and o.get("finished_at") and o, 120, "deploy ended")
        entry = op["hosts"][host.address]
        assert entry["state"] == "failed" and "the version must match" in entry["reason"]
    else:
        assert response.status_code == 400, response.text
    deploys = [r for r in host.requests() if r["time"] >= started
               and r["cmd"] == "rpm-ostree" and r["argv"][:1] == ["deploy"]]
    assert deploys == []
    markers.assert_none(host)


# -- straight through the runner: the playbooks on their own -----------------------------

def target(lab: Lab, host: LabHost, user: str = "root", **hostvars: Any) -> runner.Target:
    return runner.Target(address=host.address, private_key=Path(lab.private_key_path).read_text(),
                         user=user, host_key=host.host_public_key(), hostvars=hostvars)


def cluster_vars(host: LabHost, **changes: Any) -> dict[str, Any]:
    return {"commissaire_bootstrap_ip": host.address, "commissaire_cluster": "c",
            "commissaire_network_name": "labnet", "commissaire_network_type": "flannel_etcd",
            "commissaire_etcd_server_url": "http://127.0.0.1:2379",
            "commissaire_flannel_key": "/atomic.io/network", **changes}


@pytest.fixture(scope="module")
def bootstrapped(lab: Lab) -> LabHost:
    (host,) = lab.start_hosts(1)
    result = runner.run_playbook("investigate.yml", [target(lab, host, **cluster_vars(host))])
    assert result.ok, result
    return host


def test_a_hostile_remote_user_runs_nothing(lab: Lab, bootstrapped: LabHost,
                                           markers: Markers) -> None:
    result = runner.run_playbook("restart.yml", [target(lab, bootstrapped, markers.lookup(),
                                                        commissaire_os="lab")],
                                 extravars={"commissaire_operation_id": "restart-user-1"})
    outcome = result.hosts[bootstrapped.address]
    assert outcome.outcome != runner.OK
    assert not bootstrapped.file_exists("/var/lib/commissaire/operations/restart-user-1.restart")
    markers.assert_none(bootstrapped)


@pytest.mark.parametrize("variable", [
    "commissaire_cluster", "commissaire_network_name", "commissaire_network_type",
    "commissaire_etcd_server_url", "commissaire_flannel_key", "commissaire_flanneld_server",
    "commissaire_container_manager", "commissaire_container_manager_type",
    "commissaire_kubernetes_api_server_url", "commissaire_kubernetes_bearer_token"])
def test_each_cluster_value_arrives_as_text(variable: str, lab: Lab, bootstrapped: LabHost,
                                           markers: Markers) -> None:
    before = bootstrapped.read_file("/etc/sysconfig/flanneld")
    value = markers.lookup()
    result = runner.run_playbook("investigate.yml", [target(
        lab, bootstrapped, **cluster_vars(bootstrapped, **{variable: value}))])
    outcome = result.hosts[bootstrapped.address]
    if variable in ("commissaire_cluster", "commissaire_container_manager"):
        assert outcome.outcome == runner.OK, outcome.message  # written nowhere: harmless
    else:
        assert outcome.outcome == runner.FAILED
        assert "cannot be written on the host" in outcome.message
    assert bootstrapped.read_file("/etc/sysconfig/flanneld") == before
    markers.assert_none(bootstrapped)


def test_a_newline_in_the_flannel_key_adds_no_line(lab: Lab, bootstrapped: LabHost) -> None:
    before = bootstrapped.read_file("/etc/sysconfig/flanneld")
    result = runner.run_playbook("investigate.yml", [target(
        lab, bootstrapped, **cluster_vars(bootstrapped, commissaire_flannel_key=(
            "/atomic.io/network\nFLANNEL_OPTIONS=--evil")))])
    assert "flannel_key cannot be written" in result.hosts[bootstrapped.address].message
    after = bootstrapped.read_file("/etc/sysconfig/flanneld")
    assert after == before and "--evil" not in after


@pytest.mark.parametrize("version", ["7.3; touch /root/pwned", "$(touch /root/pwned)",
                                     "`touch /root/pwned`", "7.3' ; touch /root/pwned ; '"])
def test_a_hostile_version_never_reaches_a_shell(version: str, lab: Lab, bootstrapped: LabHost,
                                                markers: Markers) -> None:
    started = time.time()
    operation = f"deploy-h-{uuid.uuid4().hex[:8]}"
    result = runner.run_playbook("deploy.yml", [target(lab, bootstrapped, commissaire_os="lab")],
                                 extravars={"commissaire_operation_id": operation,
                                            "commissaire_deploy_version": version})
    assert "the version must match" in result.hosts[bootstrapped.address].message
    assert not [r for r in bootstrapped.requests() if r["time"] >= started
                and r["cmd"] == "rpm-ostree" and r["argv"][:1] == ["deploy"]]
    markers.assert_none(bootstrapped)


@pytest.mark.parametrize("version", ["7.3; touch /root/pwned", "$(touch /root/pwned)"])
def test_even_past_the_pattern_the_version_is_one_quoted_word(version: str, lab: Lab,
                                                             markers: Markers) -> None:
    """With the playbook's version check relaxed (an extra var outranks its
    vars_files), the shell still gets the version as one quoted argument: the
    rpm-ostree stand-in records exactly what it was asked."""
    (host,) = lab.start_hosts(1)
    started = time.time()
    operation = f"deploy-q-{uuid.uuid4().hex[:8]}"
    result = runner.run_playbook("deploy.yml", [target(lab, host, commissaire_os="lab")],
                                 extravars={"commissaire_operation_id": operation,
                                            "commissaire_deploy_version": version,
                                            "commissaire_version_pattern": ".*"})
    assert result.hosts[host.address].outcome in (runner.OK, runner.UNREACHABLE), result
    deploys = [r["argv"] for r in host.requests() if r["time"] >= started
               and r["cmd"] == "rpm-ostree" and r["argv"][:1] == ["deploy"]]
    assert deploys == [["deploy", version]]
    markers.assert_none(host)


def test_ansibles_remote_temporary_files_are_private(lab: Lab, bootstrapped: LabHost) -> None:
    # The run in `bootstrapped` wrote templates through the remote temporary dir.
    assert not bootstrapped.file_exists("/tmp/.commissaire-ansible")
    mode = bootstrapped.run("stat -c %a /root/.ansible/tmp").stdout.strip()
    assert mode == "700"


def test_a_host_without_a_pinned_key_is_never_contacted(lab: Lab) -> None:
    (host,) = lab.start_hosts(1)
    before = host.run("ls /root/.ansible 2>/dev/null | wc -l").stdout.strip()
    unpinned = target(lab, host, commissaire_os="lab")
    unpinned.host_key = ""
    result = runner.run_playbook("restart.yml", [unpinned],
                                 extravars={"commissaire_operation_id": "restart-unpinned-1"})
    assert result.hosts[host.address].outcome == runner.HOST_KEY_NOT_PINNED
    assert host.run("ls /root/.ansible 2>/dev/null | wc -l").stdout.strip() == before
    assert not host.file_exists("/var/lib/commissaire/operations/restart-unpinned-1.restart")


# -- a killed service's run dir ----------------------------------------------------------

def test_a_killed_services_run_dir_is_removed_when_it_starts_again(
        api: Api, lab: Lab, stack: AllInOneStack) -> None:
    (host,) = lab.start_hosts(1)
    group = stack.procs.procs["server"].pid  # the services run in its (gunicorn) worker

    def ours() -> list[Path]:
        found = []
        for path in Path(tempfile.gettempdir()).glob(f"{runner.RUN_DIR_PREFIX}*"):
            try:
                if os.getpgid(int(path.name.split("-")[2])) == group:
                    found.append(path)
            except (ValueError, IndexError, ProcessLookupError):
                pass
        return found

    assert api.put(f"/host/{host.address}", {"ssh_priv_key": lab.private_key_b64}
                   ).status_code == 201
    found = wait_for(ours, 60, "the investigation's run dir", every=0.05)
    stack.procs.kill("server")  # kill -9: no `finally` removes the dir
    assert all((p / "keys").is_dir() for p in found)  # its private keys stay on disk
    stack.start()  # its services remove it when they start
    assert not any(p.exists() for p in found)
