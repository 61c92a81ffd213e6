"""Bootstrap through the REST API onto debian lab hosts: the real `debian` OS
profile, Debian's own apt-get and dpkg (tools/lab, profile "debian").

What an operator sees: a host registered into a cluster with a flannel network
ends `disassociated` with docker.io installed by dpkg and flanneld fetched from
the release mirror and checked against its pinned SHA-256; a host in a cluster
with a Kubernetes container manager ends `active` with cri-o and the kubelet
installed from a pkgs.k8s.io-like repository that the pinned key signs. Each
way a component cannot be had fails the host with a reason that names the
component, what is missing and the setting that supplies it. A second
bootstrap installs and fetches nothing, and the investigator's log says so.

Packages come from a local signed mirror of Debian's archive and from local
flat repositories (tests/support/aptmirror.py), releases from a local server
(tests/support/releases.py); the last tests use Debian's real archive, as a
host straight from a cloud image would, with no mirror setting at all.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import yaml

from tests.k8s_standin.server import KubeStandIn
from tests.support.aptmirror import SOURCES_YML, AptRepos, default_minor, start_debian_hosts
from tests.support.releases import FLANNEL_VERSION, ReleaseServer, flannel_path, host_arch
from tests.support.waiting import wait_for
from tools.lab import Lab, LabHost
from tools.stack import AllInOneStack, running

pytest_plugins = ["tests.lab.conftest_debian"]
pytestmark = pytest.mark.integration

TOKEN = "debian-lab-token"
OS_TEXT = "debian 12 (bookworm)"
BOOTSTRAP_TIMEOUT = 300  # apt-get update + docker.io (~40 MB) from the local mirror: ~30 s
REAL_ARCHIVE_TIMEOUT = 900  # Debian's archive: lists and docker.io over the internet


def settings(apt_repos: AptRepos, release_server: ReleaseServer,
             upstream: str | None = None) -> dict[str, Any]:
    """The investigator's bootstrap settings an air-gapped fleet would set: both
    package repositories and GitHub's releases on mirrors, the mirror's key
    pinned, and flannel pinned to the file the release mirror serves (the
    stand-in, not upstream's flanneld, so its own digest)."""
    flannel = release_server.files[flannel_path()]
    return {"package-mirrors": apt_repos.package_mirrors(upstream or apt_repos.upstream),
            "repo-keys": apt_repos.repo_keys(),
            "release-mirror": release_server.url,
            "release-pins": {"flannel": {"version": FLANNEL_VERSION,
                                         "sha256": {host_arch(): flannel.sha256}}}}


class Api:
    """The all-in-one's REST API, as curl would use it."""

    def __init__(self, stack: AllInOneStack) -> None:
        self.stack = stack
        self.session: requests.Session = stack.session()

    def put(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.put(self.stack.base_url + path, json=body)

    def get(self, path: str) -> Any:
        return self.session.get(self.stack.base_url + path).json()

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.stack.base_url + path)

    def cluster(self, name: str, **fields: Any) -> None:
        response = self.put(f"/cluster/{name}", {"network": "default", **fields})
        assert response.status_code in (200, 201), response.text

    def kubernetes(self, name: str, kube: KubeStandIn) -> None:
        response = self.put(f"/containermanager/{name}", {
            "type": "kubernetes", "options": {"server_url": kube.url, "token": TOKEN}})
        assert response.status_code in (200, 201), response.text

    def register(self, lab: Lab, host: LabHost, cluster: str) -> None:
        response = self.put(f"/host/{host.address}", {"ssh_priv_key": lab.private_key_b64,
                                                      "cluster": cluster})
        assert response.status_code == 201, response.text

    def new_host(self, lab: Lab, repos: AptRepos, cluster: str) -> tuple[LabHost, dict[str, Any]]:
        """A fresh debian host on the local mirror, registered into `cluster`; its
        record once the bootstrap ended."""
        (host,) = start_debian_hosts(lab, repos, 1)
        self.register(lab, host, cluster)
        return host, self.settled(host)

    def settled(self, host: LabHost, timeout: float = BOOTSTRAP_TIMEOUT) -> dict[str, Any]:
        """The host's record once its bootstrap has ended (active, disassociated or failed)."""
        def ended() -> dict[str, Any] | None:
            record = self.get(f"/host/{host.address}")
            return record if record.get("status") in ("active", "disassociated", "failed") else None
        return wait_for(ended, timeout, f"bootstrap of {host.address} ended")


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def api(apt_repos: AptRepos, release_server: ReleaseServer) -> Iterator[Api]:
    config = {"investigator": settings(apt_repos, release_server), "watcher": {"interval": 5.0}}
    with running(AllInOneStack(service_config=config)) as stack:
        yield Api(stack)


def installed_packages(host: LabHost, *names: str) -> dict[str, str]:
    """dpkg's word: package -> its status ("install ok installed"), for those it knows."""
    done = host.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\n", *names])
    pairs = (line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
    return {name: status for name, status in pairs if not status.endswith("not-installed")}


def sha256_in(host: LabHost, path: str) -> str:
    return host.run(["sha256sum", path]).stdout.split()[0]


def start_counts(host: LabHost) -> dict[str, tuple[int, int, int]]:
    """unit -> how often systemd (the stand-in) started, restarted and reloaded it."""
    return {unit: (state["starts"], state["restarts"], state["reloads"])
            for unit, state in host.units().items()}


def bootstrap_log(api: Api, host: LabHost) -> list[str]:
    return [line for line in api.stack.logs().splitlines()
            if f"host {host.address} bootstrapped" in line]


# -- it works ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flannel_host(api: Api, debian_lab: Lab, apt_repos: AptRepos,
                 release_server: ReleaseServer) -> tuple[LabHost, dict[str, Any], float]:
    (host,) = start_debian_hosts(debian_lab, apt_repos, 1)
    api.cluster("flannel")
    since = time.time()
    api.register(debian_lab, host, "flannel")
    return host, api.settled(host), since


def test_a_host_in_a_flannel_cluster_gets_docker_io_and_the_pinned_flanneld(
        flannel_host: tuple[LabHost, dict[str, Any], float], apt_repos: AptRepos,
        release_server: ReleaseServer, api: Api) -> None:
    host, record, since = flannel_host
    assert (record["status"], record["status_reason"]) == ("disassociated", "")
    assert (record["os"], record["bootstrapped"]) == ("debian", True)
    # Debian's docker.io, unpacked by dpkg from the (local) archive
    assert installed_packages(host, "docker.io", "containerd", "runc") == {
        name: "install ok installed" for name in ("docker.io", "containerd", "runc")}
    assert host.run(["/usr/sbin/dockerd", "--version"]).stdout.startswith("Docker version 20.10.")
    debian_fetched = {a.path.rsplit("/", 1)[-1].split("_")[0]
                      for a in apt_repos.server.downloads("/debian/", since=since)}
    assert {"InRelease", "docker.io"} <= debian_fetched
    # flanneld: the release mirror's file, fetched once, checked against its pin
    flannel = release_server.files[flannel_path()]
    assert [a.path for a in release_server.downloads(since=since)] == ["/" + flannel.path]
    assert sha256_in(host, "/usr/local/bin/flanneld") == flannel.sha256
    assert host.run(["stat", "-c", "%a %U", "/usr/local/bin/flanneld"]).stdout.split() == ["755", "root"]
    # both services enabled and running, docker with flannel's subnet
    for unit in ("docker", "flanneld"):
        state = host.unit_state(unit)
        assert (state["UnitFileState"], state["ActiveState"]) == ("enabled", "active"), (unit, state)
    dropin = host.read_file("/etc/systemd/system/docker.service.d/10-commissaire-flannel.conf")
    assert "--bip=${FLANNEL_SUBNET}" in dropin
    assert 'FLANNELD_ETCD_PREFIX="/atomic.io/network"' in host.read_file("/etc/default/flanneld")
    (line,) = bootstrap_log(api, host)
    installed = re.search(r"disassociated: installed ([^;]*);", line)
    assert installed and sorted(installed.group(1).split(", ")) == ["ca-certificates", "docker", "flannel"], line


def test_a_second_bootstrap_changes_nothing_and_says_so(
        flannel_host: tuple[LabHost, dict[str, Any], float], api: Api, debian_lab: Lab,
        apt_repos: AptRepos, release_server: ReleaseServer) -> None:
    host, _, _ = flannel_host
    before = {path: sha256_in(host, path) for path in (
        "/usr/local/bin/flanneld", "/etc/default/flanneld",
        "/etc/systemd/system/docker.service.d/10-commissaire-flannel.conf")}
    started = start_counts(host)
    assert {"docker.service", "flanneld.service"} <= set(started)
    assert api.delete(f"/host/{host.address}").status_code in (200, 204)
    since = time.time()
    api.register(debian_lab, host, "flannel")
    record = api.settled(host)
    assert record["status"] == "disassociated", record["status_reason"]
    assert release_server.downloads(since=since) == []  # flanneld not fetched again
    assert not [a for a in apt_repos.server.downloads("/debian/", since=since)
                if a.path.endswith(".deb")]  # no package downloaded
    assert {path: sha256_in(host, path) for path in before} == before
    assert start_counts(host) == started  # no service started or restarted again
    assert bootstrap_log(api, host)[-1].endswith(
        "bootstrapped, disassociated: nothing to change (already present: ca-certificates, docker, "
        "flannel)")


def test_a_host_in_a_kubernetes_cluster_gets_cri_o_and_the_kubelet(
        api: Api, debian_lab: Lab, apt_repos: AptRepos, kube: KubeStandIn) -> None:
    (host,) = start_debian_hosts(debian_lab, apt_repos, 1)
    api.kubernetes("k8s", kube)
    api.cluster("kube", container_manager="k8s")
    since = time.time()
    api.register(debian_lab, host, "kube")
    record = api.settled(host)
    assert record["status"] == "active", record["status_reason"]
    assert kube.node(host.address) is not None
    # from the pkgs.k8s.io-like repositories, through their signed indexes
    assert installed_packages(host, "cri-o", "kubelet", "docker.io") == {
        "cri-o": "install ok installed", "kubelet": "hold ok installed"}  # no docker on a node
    minor = default_minor()
    fetched = [a.path for a in apt_repos.server.downloads("/good/", since=since)]
    assert any(f"/core:/stable:/v{minor}/deb/" in p and p.endswith(".deb") for p in fetched), fetched
    assert any(f"/addons:/cri-o:/stable:/v{minor}/deb/" in p and p.endswith(".deb") for p in fetched)
    # the kubelet runs on cri-o, against the container manager's API server
    config = host.read_file("/var/lib/kubelet/config.yaml")
    assert "unix:///var/run/crio/crio.sock" in config
    assert kube.url in host.read_file("/var/lib/kubelet/kubeconfig")
    for unit in ("crio", "kubelet", "flanneld"):
        state = host.unit_state(unit)
        assert (state["UnitFileState"], state["ActiveState"]) == ("enabled", "active"), (unit, state)
    status = api.get(f"/host/{host.address}/status")
    assert status["type"] == "host_and_container_manager"


def test_a_kubernetes_cluster_may_run_debian_s_own_containerd(
        api: Api, debian_lab: Lab, apt_repos: AptRepos, kube: KubeStandIn) -> None:
    api.kubernetes("k8s", kube)
    api.cluster("kube-containerd", container_manager="k8s", container_runtime="containerd")
    host, record = api.new_host(debian_lab, apt_repos, "kube-containerd")
    assert record["status"] == "active", record["status_reason"]
    assert installed_packages(host, "containerd", "cri-o", "kubelet", "docker.io") == {
        "containerd": "install ok installed", "kubelet": "hold ok installed"}
    assert "containerd" in host.run(["containerd", "--version"]).stdout  # Debian's own binary
    config = yaml.safe_load(host.read_file("/var/lib/kubelet/config.yaml"))
    # Debian's config.toml has the CRI plugin on and cgroupfs: the kubelet follows it
    assert (config["containerRuntimeEndpoint"], config["cgroupDriver"]) == (
        "unix:///run/containerd/containerd.sock", "cgroupfs")
    for unit in ("containerd", "kubelet"):
        state = host.unit_state(unit)
        assert (state["UnitFileState"], state["ActiveState"]) == ("enabled", "active"), (unit, state)


# -- each way it cannot, and the reason ----------------------------------------------------------

@contextmanager
def flannel_changed(release_server: ReleaseServer) -> Iterator[None]:
    """Whatever a test does to the mirror's flanneld is undone after it."""
    try:
        yield
    finally:
        release_server.add_flannel()


def test_a_release_file_with_another_checksum_fails_the_host(
        api: Api, debian_lab: Lab, apt_repos: AptRepos, release_server: ReleaseServer) -> None:
    pinned = release_server.files[flannel_path()]
    with flannel_changed(release_server):
        tampered = release_server.add(flannel_path(), "#!/bin/sh\necho not flanneld\n", 0o755)
        api.cluster("tampered")
        host, record = api.new_host(debian_lab, apt_repos, "tampered")
    assert record["status"] == "failed"
    assert record["status_reason"].endswith(
        f"flannel: {tampered.url} has sha256 {tampered.sha256}, expected {pinned.sha256} "
        f"(flannel {FLANNEL_VERSION}); the server serves another file: make release-mirror hold "
        f"the upstream file at {pinned.path}"), record["status_reason"]
    assert not host.file_exists("/usr/local/bin/flanneld")  # nothing unverified left in place


def test_a_release_missing_from_the_mirror_fails_the_host(
        api: Api, debian_lab: Lab, apt_repos: AptRepos, release_server: ReleaseServer) -> None:
    path = flannel_path()
    with flannel_changed(release_server):
        release_server.remove(path)
        api.cluster("missing-release")
        host, record = api.new_host(debian_lab, apt_repos, "missing-release")
    assert record["status"] == "failed"
    assert record["status_reason"].endswith(
        f"flannel: cannot fetch {release_server.url}{path} (HTTP 404) for {OS_TEXT}; "
        f"make release-mirror hold the upstream file at {path}"), record["status_reason"]


@pytest.mark.parametrize(("upstream", "expected"), [
    ("wrong_key_upstream", "cri-o: {url} is not signed by the pinned key {fingerprint} ("),
    ("empty_upstream", "cri-o: no package 'cri-o' in {url} (for {os}); set package-mirrors.cri-o "
                       "to a mirror that holds addons:/cri-o:/stable:/v{minor}/deb/"),
], ids=["wrong-key", "no-package"])
def test_a_repository_that_cannot_supply_cri_o_fails_the_host(
        upstream: str, expected: str, debian_lab: Lab, apt_repos: AptRepos,
        release_server: ReleaseServer, kube: KubeStandIn) -> None:
    base = getattr(apt_repos, upstream)
    config = {"investigator": settings(apt_repos, release_server, upstream=base)}
    with running(AllInOneStack(service_config=config)) as stack:
        api = Api(stack)
        api.kubernetes("k8s", kube)
        api.cluster("kube", container_manager="k8s")
        host, record = api.new_host(debian_lab, apt_repos, "kube")
    assert record["status"] == "failed"
    repo = apt_repos.repo(base, "cri-o")
    reason = record["status_reason"]
    assert expected.format(url=repo.url, fingerprint=apt_repos.key.fingerprint, os=OS_TEXT,
                           minor=default_minor()) in reason, reason
    assert installed_packages(host, "cri-o", "kubelet") == {}  # nothing from that repository


# -- Debian's real archive, no settings: what a new user meets -----------------------------------

@pytest.fixture(scope="module")
def bare_api() -> Iterator[Api]:
    with running(AllInOneStack(service_config={"watcher": {"interval": 5.0}})) as stack:
        yield Api(stack)


def test_debian_archive_gives_docker_io_and_the_reason_names_what_else_is_needed(
        bare_api: Api, debian_lab: Lab, kube: KubeStandIn) -> None:
    """Hosts as a cloud image starts them: sources on deb.debian.org, nothing
    configured in commissaire. What Debian packages is installed from Debian;
    what it does not comes from GitHub and pkgs.k8s.io, which a host here may
    not reach: then the reason says which URL and which setting supplies it."""
    plain, node = debian_lab.start_hosts(2, profile="debian")
    assert "deb.debian.org" in plain.read_file("/etc/apt/sources.list")
    bare_api.cluster("flannel")
    bare_api.kubernetes("k8s", kube)
    bare_api.cluster("kube", container_manager="k8s")
    # One after the other: hosts registered together share a run, and the
    # first of their failures need not be the same component then.
    records = {}
    for host, cluster in ((plain, "flannel"), (node, "kube")):
        bare_api.register(debian_lab, host, cluster)
        records[host.address] = bare_api.settled(host, REAL_ARCHIVE_TIMEOUT)

    # docker.io from Debian's archive, whatever became of flanneld
    assert installed_packages(plain, "docker.io")["docker.io"] == "install ok installed", \
        records[plain.address]
    record = records[plain.address]
    flanneld = ("https://github.com/flannel-io/flannel/releases/download/"
                f"{FLANNEL_VERSION}/flanneld-{host_arch()}")
    if record["status"] == "failed":
        assert record["status_reason"].endswith(
            f"flannel: cannot reach {flanneld} from the host ({OS_TEXT}); "
            "set release-mirror to a mirror the host can reach"), record["status_reason"]
    else:  # GitHub reachable: upstream's flanneld, checked against the pin in vars/sources.yml
        assert record["status"] == "disassociated", record["status_reason"]
        pins = yaml.safe_load(SOURCES_YML.read_text())["commissaire_releases"]["flannel"]["sha256"]
        assert sha256_in(plain, "/usr/local/bin/flanneld") == pins[host_arch()]

    record = records[node.address]
    minor = default_minor()
    if record["status"] == "failed":
        assert record["status_reason"].endswith(
            f"cri-o: cannot reach https://pkgs.k8s.io/addons:/cri-o:/stable:/v{minor}/deb/ from the host "
            f"({OS_TEXT}); set package-mirrors.cri-o to a mirror the host can reach"), \
            record["status_reason"]
    else:
        assert record["status"] == "active"
        assert installed_packages(node, "cri-o", "kubelet") == {
            "cri-o": "install ok installed", "kubelet": "hold ok installed"}
