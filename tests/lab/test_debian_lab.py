"""The lab's *debian* profile: lab hosts that are a plain Debian 12 with its real
apt-get, fed by loopback apt repositories (tests/support/aptmirror.py), and a
systemctl stand-in that keeps unit state as systemd would.

This is the ground the end-to-end bootstrap tests on real distributions stand
on, so it checks what they rely on: facts say debian 12; docker.io really
installs from the local mirror and no daemon starts; a pkgs.k8s.io-like flat
repository installs; a repository signed by another key is refused by apt;
Ansible's systemd_service module works against the systemctl stand-in.

Needs root. The first run on a machine downloads ~70 MB from deb.debian.org
into ~/.cache/commissaire-lab (the mirror); one host is shared by the module.
"""
from __future__ import annotations

import dataclasses
import hashlib
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from commissaire.ansible import runner
from tests.support.aptmirror import AptRepos, apt_get, start_debian_hosts
from tools.lab import Lab, LabHost

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.lab.conftest_debian"]


@dataclasses.dataclass
class Installed:
    host: LabHost
    update: str
    install: str
    install_seconds: float
    since: float


@pytest.fixture(scope="module")
def installed(debian_lab: Lab, apt_repos: AptRepos) -> Installed:
    """One debian host on the local mirror, after apt-get update && apt-get install docker.io."""
    (host,) = start_debian_hosts(debian_lab, apt_repos)
    since = time.time()
    update = apt_get(host, "update")
    assert update.returncode == 0, update.stdout
    started = time.monotonic()
    install = apt_get(host, "install", "-y", "docker.io")
    seconds = time.monotonic() - started
    assert install.returncode == 0, install.stdout[-3000:]
    print(f"apt-get install docker.io took {seconds:.1f} s")
    return Installed(host, update.stdout, install.stdout, seconds, since)


def target(lab: Lab, host: LabHost) -> runner.Target:
    return runner.Target(address=host.address, private_key=Path(lab.private_key_path).read_text(),
                         host_key=host.host_public_key())


def running_commands(host: LabHost) -> list[str]:
    return host.run(["ps", "-e", "-o", "comm="]).stdout.split()


def test_a_debian_host_is_a_fresh_debian_12(debian_lab: Lab, apt_repos: AptRepos) -> None:
    (host,) = start_debian_hosts(debian_lab, apt_repos)
    result = runner.run_playbook("facts.yml", [target(debian_lab, host)])
    assert result.ok, result.hosts
    facts = result.hosts[host.address].facts["commissaire_facts"]
    assert (facts["os"], facts["version"]) == ("debian", "12")
    assert not host.file_exists("/etc/commissaire-lab")
    # Debian's own package tools; stand-ins only where a chroot has no systemd
    found = host.run("for c in apt-get dpkg systemctl reboot shutdown; do command -v $c; done").stdout.split()
    assert found == ["/usr/bin/apt-get", "/usr/bin/dpkg", "/usr/local/sbin/systemctl",
                     "/usr/local/sbin/reboot", "/usr/local/sbin/shutdown"]
    # a fresh image: no package lists yet, sources = the local mirror only
    assert host.run("ls /var/lib/apt/lists").stdout.split() == ["partial"]
    assert "Unable to locate package docker.io" in apt_get(host, "install", "-s", "docker.io").stdout
    assert not host.file_exists("/etc/apt/sources.list")
    assert f"URIs: {apt_repos.debian.url}" in host.read_file("/etc/apt/sources.list.d/debian.sources")


def test_docker_io_installs_from_the_local_mirror_and_starts_no_daemon(
        installed: Installed, apt_repos: AptRepos) -> None:
    host = installed.host
    status = host.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", "docker.io", "containerd", "runc"])
    assert status.stdout.splitlines() == [
        f"{name} install ok installed" for name in ("containerd", "docker.io", "runc")], status.stderr
    # the real binaries, unpacked by dpkg
    assert host.run(["/usr/sbin/dockerd", "--version"]).stdout.startswith("Docker version 20.10.")
    assert "containerd" in host.run(["containerd", "--version"]).stdout
    # fetched from the mirror, through its signed index
    fetched = {Path(a.path).name.split("_")[0] for a in apt_repos.server.downloads(
        "/debian/", since=installed.since)}
    assert {"InRelease", "Packages.gz", "docker.io", "containerd", "runc"} <= fetched
    # postinst asked to start docker; policy-rc.d said no, and nothing runs
    assert "policy-rc.d denied execution of start" in installed.install
    assert not {"dockerd", "containerd"} & set(running_commands(host))
    assert not [r for r in host.requests() if r["cmd"] == "systemctl" and r["argv"][:1] != ["show"]]
    # deb-systemd-helper enabled the units; the stand-in reads that as systemd would
    docker = host.unit_state("docker")
    assert (docker["LoadState"], docker["UnitFileState"], docker["ActiveState"]) == (
        "loaded", "enabled", "inactive")
    assert docker["FragmentPath"] == "/lib/systemd/system/docker.service"


def test_kubelet_installs_from_a_flat_repository(installed: Installed, apt_repos: AptRepos) -> None:
    host = installed.host
    kubernetes = apt_repos.repo(apt_repos.upstream, "kubernetes")
    assert kubernetes.url.endswith("/good/core:/stable:/v1.35/deb/")
    kubernetes.add_to(host, "kubernetes")
    assert "deb [signed-by=" not in host.read_file("/etc/apt/sources.list.d/kubernetes.sources")
    update = apt_get(host, "update")
    assert update.returncode == 0, update.stdout
    install = apt_get(host, "install", "-y", "kubelet")
    assert install.returncode == 0, install.stdout
    assert host.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "kubelet"]).stdout == \
        "install ok installed 1.35.0-1.1"
    assert host.run(["kubelet", "--version"]).stdout.strip() == "Kubernetes v1.35.0"
    kubelet = host.unit_state("kubelet")
    assert (kubelet["LoadState"], kubelet["UnitFileState"], kubelet["ActiveState"]) == (
        "loaded", "disabled", "inactive")


def test_apt_refuses_a_repository_not_signed_by_the_pinned_key(
        installed: Installed, apt_repos: AptRepos) -> None:
    host = installed.host
    # the same packages, signed by another key; the host trusts the pinned one only
    wrong = dataclasses.replace(apt_repos.repo(apt_repos.wrong_key_upstream, "cri-o"),
                                key=apt_repos.key)
    wrong.add_to(host, "cri-o")
    try:
        update = apt_get(host, "update")
        assert update.returncode == 100, update.stdout
        assert f"NO_PUBKEY {apt_repos.other_key.fingerprint[-16:]}" in update.stdout
        # apt names a flat repository by its URL and its suite ("/")
        assert f"The repository '{wrong.url.rstrip('/')}  InRelease' is not signed." in update.stdout
        assert "Unable to locate package cri-o" in apt_get(host, "install", "-y", "cri-o").stdout
    finally:
        host.run(["rm", "-f", "/etc/apt/sources.list.d/cri-o.sources"])


def test_a_repository_without_the_package(installed: Installed, apt_repos: AptRepos) -> None:
    host = installed.host
    apt_repos.repo(apt_repos.empty_upstream, "cri-o").add_to(host, "cri-o")
    try:
        assert apt_get(host, "update").returncode == 0
        install = apt_get(host, "install", "-y", "cri-o")
        assert install.returncode == 100
        assert "Unable to locate package cri-o" in install.stdout
    finally:
        host.run(["rm", "-f", "/etc/apt/sources.list.d/cri-o.sources"])


DEMO_UNIT = "/etc/systemd/system/lab-demo.service"
DEMO_DROPIN = "/etc/systemd/system/lab-demo.service.d/20-lab.conf"
SERVICE_PLAYBOOK = textwrap.dedent(f"""\
    - hosts: all
      gather_facts: false
      tasks:
        - ansible.builtin.copy:
            dest: {DEMO_UNIT}
            content: "[Service]\\nExecStart=/bin/true\\n\\n[Install]\\nWantedBy=multi-user.target\\n"
            mode: "0644"
        - ansible.builtin.file:
            path: {DEMO_UNIT}.d
            state: directory
            mode: "0755"
        - ansible.builtin.copy:
            dest: {DEMO_DROPIN}
            content: "[Service]\\nEnvironment=LAB=1\\n"
            mode: "0644"
        - ansible.builtin.systemd_service:
            name: lab-demo
            enabled: true
            state: restarted
            daemon_reload: true
          register: first
        - ansible.builtin.systemd_service:
            name: lab-demo
            enabled: true
            state: started
          register: second
        - ansible.builtin.systemd_service:
            name: no-such-unit
            state: started
          register: missing
          ignore_errors: true
        - ansible.builtin.set_fact:
            lab_results: "{{{{ {{'first': first, 'second': second, 'missing': missing}} }}}}"
    """)


def test_systemd_service_module_against_the_systemctl_stand_in(
        debian_lab: Lab, installed: Installed, tmp_path: Path) -> None:
    host = installed.host
    (lab_host,) = debian_lab.start_hosts(1)  # the lab profile, for comparison
    playbook = tmp_path / "service.yml"
    playbook.write_text(SERVICE_PLAYBOOK)
    since = time.time()
    result = runner.run_playbook(str(playbook), [target(debian_lab, host), target(debian_lab, lab_host)])
    assert result.ok, result.hosts

    # the lab profile's systemctl says every unit exists, is enabled and active
    results: dict[str, Any] = result.hosts[lab_host.address].facts["lab_results"]
    assert (results["first"]["changed"], results["second"]["changed"]) == (True, False)
    assert not results["missing"].get("failed")
    assert [r["argv"] for r in lab_host.requests() if r["argv"][0] not in ("show", "is-enabled")] == [
        ["daemon-reload"], ["restart", "lab-demo"]]
    assert lab_host.unit_state("no-such-unit")["ActiveState"] == "active"

    # the debian profile's keeps state as systemd would
    results = result.hosts[host.address].facts["lab_results"]
    assert (results["first"]["changed"], results["first"]["enabled"], results["first"]["state"]) == (
        True, True, "started")
    assert results["second"]["changed"] is False
    assert results["missing"]["failed"]
    assert results["missing"]["msg"] == "Could not find the requested service no-such-unit: host"
    asked = [r["argv"] for r in host.requests() if r["time"] >= since and r["cmd"] == "systemctl"
             and r["argv"][0] not in ("show", "is-enabled", "is-active")]
    assert asked == [["daemon-reload"], ["enable", "lab-demo"], ["start", "lab-demo"]]
    demo = host.unit_state("lab-demo")
    assert (demo["ActiveState"], demo["UnitFileState"], demo["NeedDaemonReload"]) == (
        "active", "enabled", "no")
    assert demo["DropInPaths"] == DEMO_DROPIN
    assert host.file_exists("/etc/systemd/system/multi-user.target.wants/lab-demo.service")
    # the running service was started with the drop-in (after the daemon-reload)
    running = host.units()["lab-demo.service"]["running"]
    assert running[DEMO_DROPIN] == hashlib.sha256(b"[Service]\nEnvironment=LAB=1\n").hexdigest()

    # a changed drop-in needs a daemon-reload before a restart picks it up
    host.write_file(DEMO_DROPIN, "[Service]\nEnvironment=LAB=2\n")
    assert host.unit_state("lab-demo")["NeedDaemonReload"] == "yes"
    restart = host.run("systemctl restart lab-demo")
    assert "changed on disk. Run 'systemctl daemon-reload'" in restart.stderr
    assert host.units()["lab-demo.service"]["running"][DEMO_DROPIN] == running[DEMO_DROPIN]
    assert host.run("systemctl daemon-reload && systemctl restart lab-demo").returncode == 0
    assert host.units()["lab-demo.service"]["running"][DEMO_DROPIN] != running[DEMO_DROPIN]

    # units without a unit file fail as with systemd
    start = host.run("systemctl start no-such-unit")
    assert (start.returncode, start.stderr.strip()) == (
        5, "Failed to start no-such-unit.service: Unit no-such-unit.service not found.")
    assert host.run("systemctl is-active no-such-unit").stdout.strip() == "inactive"

    # after a reboot, enabled units are active again, stopped-and-disabled ones are not
    assert host.run("systemctl disable --now docker.service docker.socket").returncode == 0
    boot = host.boot_id()
    host.reboot()
    assert host.boot_id() != boot
    states = [host.unit_state(u) for u in ("lab-demo", "docker")]
    assert [(s["ActiveState"], s["UnitFileState"]) for s in states] == [
        ("active", "enabled"), ("inactive", "disabled")]

