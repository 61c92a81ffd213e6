"""What each OS profile installs, as data: every component a profile names has a
source (a distribution package, an upstream repository listed in
vars/sources.yml with a shipped key, a release file with SHA-256 pins), the
pins and keys are well formed, and the shipped keys are the pinned ones (read
by the very check a bootstrap runs on a host). Last, bootstrap.yml against a
lab host (lab profile: stand-ins that always succeed): the stand-in requests
and the files a bootstrap writes.
"""
from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from commissaire.ansible import runner

PLAYBOOKS = runner.PLAYBOOKS
PROFILES = {name: yaml.safe_load((PLAYBOOKS / "os" / f"{name}.yml").read_text())
            for name in runner.OS_PROFILES}
SOURCES = yaml.safe_load((PLAYBOOKS / "vars/sources.yml").read_text())
PATTERNS = yaml.safe_load((PLAYBOOKS / "vars/profiles.yml").read_text())
REPOS, RELEASES = SOURCES["commissaire_repos"], SOURCES["commissaire_releases"]

COMPONENTS = {"docker", "containerd", "cri-o", "flannel", "kubelet", "kube-proxy"}
RUNTIMES = ("docker", "containerd", "cri-o")
SOURCE_KINDS = {"package", "repo", "release", "tree", "none"}
FAMILY_FORMAT = {"deb": "deb", "rpm": "rpm", "ostree": "rpm", "lab": None}
SERVICES = {"docker": "docker", "containerd": "containerd", "cri-o": "crio",
            "flannel": "flanneld", "kubelet": "kubelet"}
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*(\{minor\})?[a-z0-9.+-]*")
ABSOLUTE = re.compile(r"/[A-Za-z0-9._/-]+")


def full(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def components(name: str, release: str | None = None) -> dict[str, dict[str, Any]]:
    """The profile's components, with a release's overrides applied."""
    profile = PROFILES[name]
    merged = {k: dict(v) for k, v in profile["commissaire_components"].items()}
    overrides = (profile["commissaire_os_releases"].get(release) or {}).get("components") or {} \
        if release else {}
    for component, changes in overrides.items():
        merged[component].update(changes)
    return merged


def every_release(name: str) -> list[str | None]:
    return list(PROFILES[name]["commissaire_os_releases"]) or [None]


CASES = [(name, release) for name in PROFILES for release in every_release(name)]
IDS = [f"{name}-{release}" for name, release in CASES]


# -- the profiles ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PROFILES))
def test_a_profile_says_what_it_is(name: str) -> None:
    profile = PROFILES[name]
    assert profile["commissaire_os_family"] in FAMILY_FORMAT
    releases = profile["commissaire_os_releases"]
    assert isinstance(releases, dict)
    assert bool(releases) == (name != "lab"), "only the lab takes any release"
    for number, release in releases.items():
        assert isinstance(number, str) and full(r"[0-9]+(\.[0-9]+)?", number), number
        assert isinstance(release["codename"], str)
        assert set(release.get("components") or {}) <= COMPONENTS
    assert full(r"[a-z]+", profile["commissaire_repo_os"])
    assert all(PACKAGE_NAME.fullmatch(p) for p in profile["commissaire_prerequisites"])
    assert ABSOLUTE.fullmatch(profile["commissaire_flanneld_env"])
    assert profile["commissaire_restart_command"] == "systemctl reboot"


@pytest.mark.parametrize("name, release", CASES, ids=IDS)
def test_every_component_has_a_source(name: str, release: str | None) -> None:
    family = PROFILES[name]["commissaire_os_family"]
    found = components(name, release)
    assert set(found) == COMPONENTS
    for component, spec in found.items():
        source = spec["source"]
        assert source in SOURCE_KINDS, (component, source)
        if source == "none":
            assert component == "kube-proxy"
            continue
        assert spec["service"] == SERVICES[component], component
        if source in ("package", "repo", "tree"):
            assert spec["packages"], component
            assert all(PACKAGE_NAME.fullmatch(p) for p in spec["packages"]), spec["packages"]
        if source == "repo":
            fmt = FAMILY_FORMAT[family]
            assert fmt is not None, f"{name} has no package repositories"
            assert spec["repo"] in REPOS and fmt in REPOS[spec["repo"]], (component, spec["repo"])
        if source == "release":
            assert spec["release"] in RELEASES and ABSOLUTE.fullmatch(spec["dest"])
        if source == "tree":
            assert family == "ostree"
        if family == "lab":
            assert source == "package", "the lab installs with its stand-ins only"


@pytest.mark.parametrize("name, release", CASES, ids=IDS)
def test_each_runtime_says_how_the_node_reaches_it(name: str, release: str | None) -> None:
    found = components(name, release)
    docker = found["docker"]
    assert ABSOLUTE.fullmatch(docker["dockerd"]) and "-H" in docker["dockerd_args"]
    assert all(full(r"[A-Za-z0-9=:/._-]+", arg) for arg in docker["dockerd_args"])
    for runtime in ("containerd", "cri-o"):
        spec = found[runtime]
        assert ABSOLUTE.fullmatch(spec["socket"]) and spec["socket"].endswith(".sock")
        assert spec["cgroup_driver"] in ("systemd", "cgroupfs")
        if spec.get("max_kube_minor"):
            assert full(r"1\.[0-9]{1,2}", spec["max_kube_minor"])
        if spec.get("config"):
            assert spec["cgroup_driver"] == "systemd"  # what templates/containerd-config.toml.j2 sets
    assert ABSOLUTE.fullmatch(found["kubelet"]["binary"])


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_default_runtime_suits_each_kind_of_node(name: str) -> None:
    default = PROFILES[name]["commissaire_default_runtime"]
    assert set(default) == {"none", "kubernetes", "openshift"}
    assert all(runtime in RUNTIMES for runtime in default.values())
    assert default["kubernetes"] != "docker" and default["openshift"] == "cri-o"
    for release in every_release(name):
        found = components(name, release)
        assert all(found[runtime]["source"] != "none" for runtime in default.values())


def test_the_facts_of_the_research_are_in_the_data() -> None:
    """The packages docs/distributions-research.md §2 found, where they are."""
    def packages(name: str, component: str, release: str | None = None) -> list[str]:
        return components(name, release)[component].get("packages", [])
    assert packages("debian", "docker") == ["docker.io"]
    assert packages("ubuntu", "docker") == ["docker.io"]
    assert packages("fedora", "docker") == ["moby-engine"]
    assert packages("fedora", "kubelet") == ["kubernetes{minor}"]
    assert packages("fedora", "cri-o") == ["cri-o{minor}"]
    assert components("rhel")["docker"]["repo"] == components("centos")["docker"]["repo"] == \
        "docker-ce"
    assert components("debian", "12")["containerd"]["max_kube_minor"] == "1.35"
    assert not components("ubuntu", "24.04")["containerd"].get("max_kube_minor")
    for name in ("debian", "ubuntu", "fedora", "rhel", "centos", "atomic"):
        assert components(name)["flannel"]["source"] == "release", name
        assert components(name)["kube-proxy"]["source"] == "none", name
    assert components("atomic")["docker"]["source"] == "tree"


def test_kube_proxy_is_not_installed_and_the_data_says_why() -> None:
    why = SOURCES["commissaire_not_installed"]["kube-proxy"]
    assert "DaemonSet" in why
    assert "kube-proxy" not in RELEASES


# -- the sources -------------------------------------------------------------------------

def test_the_default_kubernetes_minor_is_a_minor() -> None:
    minor = SOURCES["commissaire_kubernetes_minor_default"]
    assert isinstance(minor, str)
    assert full(PATTERNS["commissaire_kubernetes_minor_pattern"], minor) and minor


@pytest.mark.parametrize("repo", list(REPOS))
def test_every_repository_has_a_base_a_layout_and_a_pinned_key(repo: str) -> None:
    data = REPOS[repo]
    assert full(PATTERNS["commissaire_mirror_pattern"], data["upstream"])
    assert data["upstream"].startswith("https://") and data["upstream"].endswith("/")
    assert {"deb", "rpm"} & set(data)
    for fmt in ("deb", "rpm"):
        if fmt not in data:
            continue
        layout = data[fmt]
        path = layout["path"].replace("$basearch", "x86_64")
        for word in ("{minor}", "{os}", "{codename}", "{release}"):
            path = path.replace(word, "x")
        assert full(r"[A-Za-z0-9._~:@+,=%/-]*", path) and not path.startswith("/"), layout["path"]
        assert full(PATTERNS["commissaire_fingerprint_pattern"], layout["fingerprint"])
        assert layout["fingerprint"] == layout["fingerprint"].upper()
        assert (PLAYBOOKS / "files/keys" / layout["key"]).is_file(), layout["key"]
        if fmt == "deb":
            assert layout["suite"] == "/" or layout.get("components"), "flat, or with components"


@pytest.mark.parametrize("release", list(RELEASES))
def test_every_release_is_pinned_for_amd64_and_arm64(release: str) -> None:
    data = RELEASES[release]
    assert full(PATTERNS["commissaire_release_version_pattern"], data["version"])
    assert full(PATTERNS["commissaire_mirror_pattern"], data["upstream"])
    assert "{version}" in data["path"] and "{arch}" in data["path"]
    assert set(data["sha256"]) == {"amd64", "arm64"} or data.get("why")
    for arch, digest in data["sha256"].items():
        assert full(PATTERNS["commissaire_arch_pattern"], arch)
        assert full(r"[0-9a-f]{64}", digest), (arch, digest)


def key_check_script() -> str:
    """The fingerprint check tasks/repo.yml runs on hosts."""
    tasks = yaml.safe_load((PLAYBOOKS / "tasks/repo.yml").read_text())
    task = next(t for t in tasks if t["name"].startswith("Check the signing key"))
    argv: list[str] = task["ansible.builtin.command"]["argv"]
    assert argv[:2] == ["python3", "-c"]
    return argv[2]


def fingerprints(armored: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", key_check_script()], input=armored,
                          capture_output=True, text=True, timeout=30)


PINNED = sorted({(layout["key"], layout["fingerprint"]) for data in REPOS.values()
                 for fmt, layout in data.items() if fmt in ("deb", "rpm")})


@pytest.mark.parametrize("key, fingerprint", PINNED)
def test_a_shipped_key_is_the_pinned_one(key: str, fingerprint: str) -> None:
    text = (PLAYBOOKS / "files/keys" / key).read_text()
    assert full(PATTERNS["commissaire_armored_key_pattern"], text.strip() + "\n")
    done = fingerprints(text)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [fingerprint]
    assert fingerprint in (PLAYBOOKS / "files/keys/README.md").read_text()


def armor(packets: bytes) -> str:
    body = base64.b64encode(packets).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN PGP PUBLIC KEY BLOCK-----", "", *lines,
                      "-----END PGP PUBLIC KEY BLOCK-----", ""])


def packets_of(key: str) -> bytes:
    lines = (PLAYBOOKS / "files/keys" / key).read_text().strip().splitlines()
    start = lines.index("") + 1
    return base64.b64decode("".join(line for line in lines[start:-1] if not line.startswith("=")))


def test_the_key_check_sees_every_key_in_the_block() -> None:
    """A block holding the pinned key and another one shows both (and is refused)."""
    both = armor(packets_of("kubernetes.asc") + packets_of("docker-rpm.asc"))
    done = fingerprints(both)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DE15B14486CD377B9E876E1A234654DA9A296436",
                                   "060A61C51B558A7F742B77AAC52FEB6B621E9F35"]


@pytest.mark.parametrize("text", [
    "", "not a key\n",
    (PLAYBOOKS / "files/keys/kubernetes.asc").read_text() * 2,
    (PLAYBOOKS / "files/keys/kubernetes.asc").read_text() + "[Service]\nExecStart=/bin/sh\n",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
])
def test_the_key_check_refuses_what_is_not_one_key_block(text: str) -> None:
    done = fingerprints(text)
    assert done.returncode != 0 and done.stdout == "", done.stdout


# -- bootstrap.yml on a lab host ---------------------------------------------------------

@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    from tools.lab import Lab
    with Lab(reboot_time=1.0) as lab:
        yield lab


def cluster_vars(address: str, **changes: Any) -> dict[str, Any]:
    """What the investigator gives a host of a cluster with a flannel_etcd network."""
    return {"commissaire_bootstrap_ip": address, "commissaire_cluster": "c",
            "commissaire_network_name": "labnet", "commissaire_network_type": "flannel_etcd",
            "commissaire_etcd_server_url": "http://127.0.0.1:2379",
            "commissaire_flannel_key": "/atomic.io/network", **changes}


KUBERNETES = {"commissaire_container_manager": "kube",
              "commissaire_container_manager_type": "kubernetes",
              "commissaire_kubernetes_api_server_url": "https://127.0.0.1:6443",
              "commissaire_kubernetes_bearer_token": "lab-token"}
DROPINS = "/etc/systemd/system"


@pytest.mark.integration
def test_bootstrap_on_lab_hosts_asks_the_stand_ins_and_writes_the_configuration(lab: Any) -> None:
    plain, kube = lab.start_hosts(2)
    facts: dict[str, dict[str, Any]] = {}

    def on_ok(host: str, task: str, res: dict[str, Any]) -> None:
        facts.setdefault(host, {}).update(res.get("ansible_facts") or {})

    targets = [runner.Target(address=h.address, private_key=Path(lab.private_key_path).read_text(),
                             host_key=h.host_public_key(), hostvars=hostvars)
               for h, hostvars in ((plain, cluster_vars(plain.address)),
                                   (kube, cluster_vars(kube.address, **KUBERNETES)))]
    result = runner.run_playbook("investigate.yml", targets, on_ok=on_ok)
    assert result.ok, result.hosts

    # (The two hosts share the install of flannel: its order among the installs varies.)
    asked = [" ".join([r["cmd"], *r["argv"]]) for r in plain.requests()]
    assert sorted(a for a in asked if a.startswith("apt-get")) == [
        "apt-get install -y docker.io", "apt-get install -y flannel"]
    assert [a for a in asked if a.startswith("systemctl")] == [
        "systemctl daemon-reload", "systemctl enable flanneld docker",
        "systemctl restart flanneld docker"]
    env = plain.read_file("/etc/sysconfig/flanneld")
    assert 'FLANNELD_ETCD_ENDPOINTS="http://127.0.0.1:2379"' in env
    assert 'FLANNELD_ETCD_PREFIX="/atomic.io/network"' in env
    unit = plain.read_file(f"{DROPINS}/flanneld.service")
    assert "EnvironmentFile=/etc/sysconfig/flanneld" in unit and "Type=notify" in unit
    dropin = plain.read_file(f"{DROPINS}/docker.service.d/10-commissaire-flannel.conf")
    assert "EnvironmentFile=/run/flannel/subnet.env" in dropin
    assert "--bip=${FLANNEL_SUBNET} --mtu=${FLANNEL_MTU}" in dropin
    assert not plain.file_exists(f"{DROPINS}/kubelet.service.d/20-commissaire.conf")
    changes = facts[plain.address]["commissaire_bootstrap_changes"]
    assert sorted(changes["installed"]) == ["docker", "flannel"]
    assert changes["already_present"] == [] and changes["nothing_to_change"] is False
    assert changes["restarted"] == ["flanneld", "docker"]

    asked = [" ".join([r["cmd"], *r["argv"]]) for r in kube.requests()]
    installs = [a for a in asked if a.startswith("apt-get")]
    assert sorted(installs) == ["apt-get install -y cri-o", "apt-get install -y flannel",
                                "apt-get install -y kubelet"]  # docker and kube-proxy: never
    assert [a for a in asked if a.startswith("systemctl")] == [
        "systemctl daemon-reload", "systemctl enable crio flanneld kubelet",
        "systemctl restart crio flanneld kubelet"]
    kubelet = kube.read_file(f"{DROPINS}/kubelet.service.d/20-commissaire.conf")
    assert "ExecStart=\n" in kubelet
    assert (f"--kubeconfig=/var/lib/kubelet/kubeconfig --hostname-override={kube.address} "
            f"--node-ip={kube.address}") in kubelet
    config = yaml.safe_load(kube.read_file("/var/lib/kubelet/config.yaml"))
    assert config["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"
    assert config["cgroupDriver"] == "systemd" and config["kind"] == "KubeletConfiguration"
    kubeconfig = yaml.safe_load(kube.read_file("/var/lib/kubelet/kubeconfig"))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    mode = kube.run("stat -c %a /var/lib/kubelet/kubeconfig").stdout.strip()
    assert mode == "600"
    assert not kube.file_exists(f"{DROPINS}/docker.service.d/10-commissaire-flannel.conf")
