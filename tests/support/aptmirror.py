"""Signed apt repositories on loopback, for lab hosts that run the real *debian*
profile (tools/lab, ``profile="debian"``) without reaching any outside mirror.

Two kinds, both served by one `FileServer` (tests/support/releases.py) on
127.0.0.1 and signed by throwaway keys made per session in a temp GNUPGHOME:

* **A Debian mirror** (``AptRepos.debian``): bookworm, component main, holding
  only the dependency closure of a few packages (docker.io, ca-certificates,
  python3-apt) computed against the debian lab base's dpkg status, i.e. exactly
  what a fresh lab host lacks. The .debs come once from deb.debian.org (~70 MB)
  into ``~/.cache/commissaire-lab/mirror-<hash>/`` (hash of the package list,
  the archive and the base's dpkg status; built under a lock, as the lab base
  is); each session signs its own Release. `use_debian_mirror()` makes a host
  use it instead of debootstrap's sources, as its "own package sources".
* **Flat repositories** like pkgs.k8s.io (``deb [signed-by=...] URL /``) of
  synthetic packages built with ``dpkg-deb --build`` (kubelet, cri-o: a script
  and a systemd unit each), laid out under a base URL exactly as upstream
  (``core:/stable:/v1.35/deb/``, ``addons:/cri-o:/stable:/v1.35/deb/``, paths
  from playbooks/vars/sources.yml), so the product's ``package-mirrors``
  setting can point at the base. ``AptRepos.upstream`` is signed by
  ``AptRepos.key`` (give it to the product as ``repo-keys``),
  ``AptRepos.wrong_key_upstream`` holds the same packages signed by another
  key, ``AptRepos.empty_upstream`` holds repositories without packages.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path

import yaml

from tests.support.releases import FileServer
from tools.lab import Lab, LabHost
from tools.lab.base import MIRROR as DEBIAN_ARCHIVE
from tools.lab.base import SUITE, cached, ensure_base

REPO = Path(__file__).resolve().parents[2]
SOURCES_YML = REPO / "playbooks" / "vars" / "sources.yml"

#: What the debian mirror holds (with every dependency a fresh debian lab host lacks).
DEBIAN_PACKAGES = ("docker.io", "ca-certificates", "python3-apt")
#: Bumped when the cached mirror's layout changes.
MIRROR_FORMAT = 1
#: Where use_debian_mirror() puts the mirror's key inside a host.
DEBIAN_KEYRING = "/etc/apt/keyrings/lab-debian-mirror.asc"
DEBIAN_SOURCES = "/etc/apt/sources.list.d/debian.sources"


def arch() -> str:
    """dpkg's name of this machine's (and so a lab host's) architecture."""
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


# -- signing keys -----------------------------------------------------------------------------

class SigningKey:
    """A throwaway OpenPGP signing key (ed25519) in its own GNUPGHOME."""

    def __init__(self, home: Path, name: str) -> None:
        self.home = home
        self.name = name
        home.mkdir(mode=0o700, parents=True)
        self._gpg("--quick-gen-key", "--passphrase", "", f"{name} <{name}@commissaire.invalid>",
                  "ed25519", "sign", "never")
        listing = self._gpg("--with-colons", "--list-keys").stdout
        self.fingerprint = re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.M)[0]
        #: the public key, ASCII-armored (what repo-keys and Signed-By take)
        self.armored = self._gpg("--armor", "--export", self.fingerprint).stdout

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["gpg", "--batch", "--yes", "--homedir", str(self.home),
                               "--pinentry-mode", "loopback", *args],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
        return done

    def sign(self, release: Path) -> None:
        """InRelease (clear-signed) and Release.gpg (detached) next to `release`."""
        for how, name in (("--clearsign", "InRelease"), ("--detach-sign", "Release.gpg")):
            self._gpg("--local-user", self.fingerprint, "--digest-algo", "SHA512", how,
                      "--armor", "-o", str(release.with_name(name)), str(release))

    def close(self) -> None:
        """Stop the gpg-agent this key's GNUPGHOME started."""
        _Agent(self.home).close()


@dataclasses.dataclass(frozen=True)
class _Agent:
    """The gpg-agent a GNUPGHOME may have started: gpgconf stops that one only."""

    home: Path

    def close(self) -> None:
        if self.home.is_dir():
            subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                           capture_output=True)


# -- synthetic packages -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Package:
    """A .deb to build with dpkg-deb: files are {absolute path: (content, mode)}."""

    name: str
    version: str
    files: dict[str, tuple[str, int]]
    depends: str = ""
    description: str = "synthetic package for commissaire lab tests"


def build_deb(package: Package, outdir: Path, architecture: str | None = None) -> Path:
    """`package` as outdir/<name>_<version>_<arch>.deb (dpkg-deb --build)."""
    architecture = architecture or arch()
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        root = Path(tmp)
        for path, (content, mode) in package.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        control = [f"Package: {package.name}", f"Version: {package.version}",
                   f"Architecture: {architecture}", "Maintainer: commissaire lab <lab@commissaire.invalid>",
                   "Section: admin", "Priority: optional", f"Description: {package.description}"]
        if package.depends:
            control.insert(3, f"Depends: {package.depends}")
        (root / "DEBIAN").mkdir()
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        deb = outdir / f"{package.name}_{package.version}_{architecture}.deb"
        done = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dpkg-deb --build {package.name}: {done.stderr}")
    return deb


def kubelet_package(version: str = "1.35.0-1.1") -> Package:
    """Stands in for pkgs.k8s.io's kubelet: /usr/bin/kubelet and kubelet.service."""
    short = "v" + version.split("-")[0]
    return Package("kubelet", version, {
        "/usr/bin/kubelet": (f'#!/bin/sh\n# kubelet stand-in (tests/support/aptmirror.py)\n'
                             f'[ "$1" = "--version" ] && echo "Kubernetes {short}" && exit 0\n'
                             f'echo "kubelet stand-in {short}: $*"\n', 0o755),
        "/lib/systemd/system/kubelet.service": (
            "[Unit]\nDescription=kubelet: The Kubernetes Node Agent\n"
            "Documentation=https://kubernetes.io/docs/\nWants=network-online.target\n"
            "After=network-online.target\n\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n"
            "StartLimitInterval=0\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n", 0o644),
    }, description="Node agent for Kubernetes clusters (lab stand-in)")


def crio_package(version: str = "1.35.0-1.1") -> Package:
    """Stands in for pkgs.k8s.io's cri-o: /usr/bin/crio and crio.service (alias cri-o)."""
    short = version.split("-")[0]
    return Package("cri-o", version, {
        "/usr/bin/crio": (f'#!/bin/sh\n# crio stand-in (tests/support/aptmirror.py)\n'
                          f'[ "$1" = "--version" ] && echo "crio version {short}" && exit 0\n'
                          f'echo "crio stand-in {short}: $*"\n', 0o755),
        "/lib/systemd/system/crio.service": (
            "[Unit]\nDescription=Container Runtime Interface for OCI (CRI-O)\n"
            "Documentation=https://github.com/cri-o/cri-o\nWants=network-online.target\n"
            "Before=kubelet.service\nAfter=network-online.target\n\n[Service]\nType=notify\n"
            "EnvironmentFile=-/etc/sysconfig/crio\nExecStart=/usr/bin/crio $CRIO_CONFIG_OPTIONS\n"
            "Restart=on-failure\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n"
            "Alias=cri-o.service\n", 0o644),
    }, description="OCI-based implementation of Kubernetes Container Runtime Interface (lab stand-in)")


# -- repositories -----------------------------------------------------------------------------

@dataclasses.dataclass
class AptRepo:
    """One signed apt repository being served."""

    url: str  # what apt's URIs take, with a trailing slash
    suite: str  # "bookworm", or "/" for a flat repository
    components: tuple[str, ...]  # () for a flat repository
    key: SigningKey
    dir: Path  # its top directory on this machine (Release, InRelease, ...)
    packages: tuple[str, ...]  # the package names it holds

    @property
    def flat(self) -> bool:
        return self.suite == "/"

    def deb822(self, keyring: str) -> str:
        """A deb822 .sources stanza for this repository, its key at `keyring`."""
        lines = ["Types: deb", f"URIs: {self.url}", f"Suites: {self.suite}"]
        if self.components:
            lines.append("Components: " + " ".join(self.components))
        return "\n".join([*lines, f"Signed-By: {keyring}", ""])

    def one_line(self, keyring: str) -> str:
        """The same as a one-line sources.list entry."""
        return f"deb [signed-by={keyring}] {self.url} {self.suite} {' '.join(self.components)}".rstrip() + "\n"

    def add_to(self, host: LabHost, name: str) -> None:
        """Make `host` use this repository too: its key in
        /etc/apt/keyrings/<name>.asc, /etc/apt/sources.list.d/<name>.sources."""
        keyring = f"/etc/apt/keyrings/{name}.asc"
        host.write_file(keyring, self.key.armored)
        host.write_file(f"/etc/apt/sources.list.d/{name}.sources", self.deb822(keyring))


def use_debian_mirror(host: LabHost, repo: AptRepo) -> None:
    """Make `repo` the host's own Debian sources, as a cloud image's
    /etc/apt/sources.list.d/debian.sources would be; debootstrap's
    /etc/apt/sources.list (deb.debian.org) goes. Nothing is fetched here:
    the host's package lists stay empty until something runs apt-get update."""
    host.write_file(DEBIAN_KEYRING, repo.key.armored)
    host.write_file(DEBIAN_SOURCES, repo.deb822(DEBIAN_KEYRING))
    host.run(["rm", "-f", "/etc/apt/sources.list"]).check_returncode()


def start_debian_hosts(lab: Lab, repos: AptRepos, count: int = 1) -> list[LabHost]:
    """`count` fresh debian lab hosts whose package sources are the local Debian
    mirror (nothing fetched yet: their package lists are empty)."""
    hosts = lab.start_hosts(count, profile="debian")
    for host in hosts:
        use_debian_mirror(host, repos.debian)
    return hosts


def apt_get(host: LabHost, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run apt-get inside `host` as a playbook would (non-interactive, -q); the
    completed process, stderr folded into stdout (text)."""
    return host.run(["env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c", 'exec apt-get -q "$@" 2>&1',
                     "apt-get", *args], timeout=timeout)


def write_index(repo_dir: Path, debs_dir: str, suite: str, components: tuple[str, ...],
                key: SigningKey, architecture: str, packages_text: str | None = None) -> None:
    """Packages(.gz), Release (SHA256) and its signatures for the .debs under
    repo_dir/debs_dir (Filename: paths relative to repo_dir). A flat repository
    (suite "/") has them all at its top; else under dists/<suite>/."""
    if packages_text is None:
        packages_text = scan_packages(repo_dir, debs_dir)
    flat = suite == "/"
    top = repo_dir if flat else repo_dir / "dists" / suite
    index_dir = "" if flat else f"{components[0]}/binary-{architecture}/"
    (top / index_dir).mkdir(parents=True, exist_ok=True)
    (top / index_dir / "Packages").write_text(packages_text)
    with open(top / index_dir / "Packages.gz", "wb") as f:
        # mtime=0: the same content gives the same bytes
        f.write(gzip.compress(packages_text.encode(), mtime=0))
    fields = ["Origin: commissaire-lab", "Label: commissaire-lab",
              f"Date: {formatdate(time.time(), usegmt=True)}", f"Architectures: {architecture}"]
    if not flat:
        fields[2:2] = [f"Suite: {suite}", f"Codename: {suite}"]
        fields.append("Components: " + " ".join(components))
    fields.append("SHA256:")
    for name in ("Packages", "Packages.gz"):
        data = (top / index_dir / name).read_bytes()
        fields.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>16} {index_dir}{name}")
    release = top / "Release"
    release.write_text("\n".join(fields) + "\n")
    key.sign(release)


def scan_packages(repo_dir: Path, debs_dir: str) -> str:
    done = subprocess.run(["dpkg-scanpackages", "--multiversion", debs_dir, "/dev/null"],
                          cwd=repo_dir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dpkg-scanpackages: {done.stderr}")
    return done.stdout


def package_names(packages_text: str) -> tuple[str, ...]:
    return tuple(sorted(set(re.findall(r"^Package: (\S+)$", packages_text, re.M))))


# -- the cached Debian pool -------------------------------------------------------------------

def debian_pool(packages: Iterable[str] = DEBIAN_PACKAGES,
                log: Callable[[str], None] = print) -> Path:
    """The cached closure of `packages` against the debian lab base:
    <dir>/pool/main/*.deb, <dir>/Packages (Filename: pool/main/...). Built
    once per machine (downloads from deb.debian.org), under a lock."""
    base = ensure_base(log=log, profile="debian")
    status = (base / "var/lib/dpkg/status").read_bytes()
    wanted = tuple(sorted(set(packages)))
    architecture = arch()
    digest = hashlib.sha256(repr((MIRROR_FORMAT, DEBIAN_ARCHIVE, SUITE, architecture, wanted)).encode())
    digest.update(status)
    return cached(f"mirror-{digest.hexdigest()[:12]}",
                  lambda tmp: _build_pool(tmp, wanted, base, architecture), log)


def _build_pool(target: Path, packages: tuple[str, ...], base: Path, architecture: str) -> None:
    target.mkdir()
    private = target / ".apt"  # apt's own state for this build only, none of the machine's
    for sub in ("conf.d", "sources.d", "preferences.d", "trusted.d", "lists/partial",
                "cache/archives/partial", "state"):
        (private / sub).mkdir(parents=True)
    (private / "sources.list").write_text(
        f"deb [signed-by={base}/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"{DEBIAN_ARCHIVE} {SUITE} main\n")
    conf = {
        "Dir::Etc::Main": "/dev/null", "Dir::Etc::Parts": private / "conf.d",
        "Dir::Etc::SourceList": private / "sources.list", "Dir::Etc::SourceParts": private / "sources.d",
        "Dir::Etc::Preferences": "/dev/null", "Dir::Etc::PreferencesParts": private / "preferences.d",
        "Dir::Etc::Trusted": "/dev/null", "Dir::Etc::TrustedParts": private / "trusted.d",
        "Dir::State": private / "state", "Dir::State::Lists": private / "lists",
        "Dir::State::status": base / "var/lib/dpkg/status", "Dir::Cache": private / "cache",
        "Debug::NoLocking": "true", "APT::Architecture": architecture,
        "APT::Install-Recommends": "false", "Acquire::Languages": "none",
        "APT::Sandbox::User": "root", "Acquire::Retries": "3",
    }
    (private / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in conf.items()))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "APT_CONFIG": str(private / "apt.conf"), "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str, cwd: Path = target) -> str:
        done = subprocess.run(["apt-get", "-q", *args], cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get {args[0]} for the lab mirror failed: {done.stdout[-1500:]}"
                               f"{done.stderr[-1500:]}")
        return done.stdout

    apt_get("update")
    plan = apt_get("install", "-s", *packages)
    closure = re.findall(r"^Inst (\S+) \((\S+) ", plan, re.M)
    if not closure:
        raise RuntimeError(f"nothing to download for {packages}: {plan[-1500:]}")
    pool = target / "pool" / "main"
    pool.mkdir(parents=True)
    apt_get("download", *(f"{name}={version}" for name, version in closure), cwd=pool)
    (target / "Packages").write_text(scan_packages(target, "pool/main"))
    (target / "closure.txt").write_text("".join(f"{n} {v}\n" for n, v in closure))
    shutil.rmtree(private)


# -- what a session serves ----------------------------------------------------------------------

def upstream_path(repo: str, minor: str) -> str:
    """A repository's path under its base URL, as playbooks/vars/sources.yml has it."""
    sources = yaml.safe_load(SOURCES_YML.read_text())
    return str(sources["commissaire_repos"][repo]["deb"]["path"]).format(minor=minor)


def default_minor() -> str:
    return str(yaml.safe_load(SOURCES_YML.read_text())["commissaire_kubernetes_minor_default"])


class AptRepos:
    """Everything one session serves; see the module docstring. Made by serve_repos()."""

    def __init__(self, workdir: Path, server: FileServer, debian_dir: Path,
                 minors: tuple[str, ...]) -> None:
        self.workdir = workdir
        self.server = server
        self.architecture = arch()
        self.minors = minors
        self._agents: list[_Agent] = []
        try:
            keys = workdir / "keys"
            #: signs the Debian mirror
            self.debian_key = self._key(keys / "debian", "commissaire-lab-debian-mirror")
            #: signs `upstream` and `empty_upstream`: the key a test pins (repo-keys)
            self.key = self._key(keys / "upstream", "commissaire-lab-upstream")
            #: signs `wrong_key_upstream`: not the pinned key
            self.other_key = self._key(keys / "other", "commissaire-lab-other")
            #: the Debian mirror, at <server>/debian/
            self.debian = self._debian_mirror(debian_dir)
            self.debs = workdir / "debs"
            self.debs.mkdir()
            self.kubelet_deb = build_deb(kubelet_package(), self.debs, self.architecture)
            self.crio_deb = build_deb(crio_package(), self.debs, self.architecture)
            #: base URLs laid out as https://pkgs.k8s.io/ (see the module docstring)
            self.upstream = self.upstream_like("good", self.key)
            self.wrong_key_upstream = self.upstream_like("wrong-key", self.other_key)
            self.empty_upstream = self.upstream_like("empty", self.key, with_packages=False)
        except BaseException:
            self.close()
            raise

    def _key(self, home: Path, name: str) -> SigningKey:
        # its agent is stopped at close() even if gpg fails after starting it
        self._agents.append(_Agent(home))
        return SigningKey(home, name)

    def _debian_mirror(self, pool_dir: Path) -> AptRepo:
        root = self.server.root / "debian"
        root.mkdir()
        (root / "pool").symlink_to(pool_dir / "pool")
        packages_text = (pool_dir / "Packages").read_text()
        write_index(root, "pool/main", SUITE, ("main",), self.debian_key, self.architecture,
                    packages_text)
        return AptRepo(self.server.url + "debian/", SUITE, ("main",), self.debian_key, root,
                       package_names(packages_text))

    def flat_repo(self, base: str, path: str, debs: Iterable[Path], key: SigningKey) -> AptRepo:
        """A flat repository of `debs` at <server>/<base>/<path> (path ends with "/"),
        its .debs under <arch>/ as on pkgs.k8s.io, signed by `key`."""
        root = self.server.root / base / path
        (root / self.architecture).mkdir(parents=True)
        for deb in debs:
            shutil.copy(deb, root / self.architecture / deb.name)
        write_index(root, self.architecture, "/", (), key, self.architecture)
        return AptRepo(f"{self.server.url}{base}/{path}", "/", (), key, root,
                       package_names((root / "Packages").read_text()))

    def upstream_like(self, base: str, key: SigningKey, with_packages: bool = True) -> str:
        """A base URL holding, for each minor, the kubernetes repository (kubelet)
        and the cri-o one (cri-o) at their upstream paths, signed by `key`."""
        for minor in self.minors:
            for repo, deb in (("kubernetes", self.kubelet_deb), ("cri-o", self.crio_deb)):
                self.flat_repo(base, upstream_path(repo, minor), [deb] if with_packages else [], key)
        return f"{self.server.url}{base}/"

    def repo(self, base_url: str, repo: str, minor: str | None = None) -> AptRepo:
        """The AptRepo of `repo` ("kubernetes", "cri-o") under one of the base URLs."""
        path = upstream_path(repo, minor or self.minors[0])
        root = self.server.root / base_url[len(self.server.url):] / path
        key = self.other_key if base_url == self.wrong_key_upstream else self.key
        return AptRepo(base_url + path, "/", (), key, root, package_names((root / "Packages").read_text()))

    def repo_keys(self) -> dict[str, dict[str, str]]:
        """The product's repo-keys setting that pins `key` for kubernetes and cri-o."""
        pinned = {"key": self.key.armored, "fingerprint": self.key.fingerprint}
        return {"kubernetes": dict(pinned), "cri-o": dict(pinned)}

    @staticmethod
    def package_mirrors(base_url: str) -> dict[str, str]:
        """The product's package-mirrors setting pointing kubernetes and cri-o at `base_url`."""
        return {"kubernetes": base_url, "cri-o": base_url}

    def close(self) -> None:
        """Stop the keys' gpg-agents."""
        for agent in self._agents:
            agent.close()


@contextmanager
def serve_repos(packages: Iterable[str] = DEBIAN_PACKAGES, minors: Iterable[str] | None = None,
                log: Callable[[str], None] = print) -> Iterator[AptRepos]:
    """Build (or reuse) the Debian pool, make keys and repositories in a temp
    dir, serve them on 127.0.0.1; stop and remove everything on exit."""
    pool = debian_pool(packages, log)
    workdir = Path(tempfile.mkdtemp(prefix="commissaire-aptrepos-"))
    try:
        (workdir / "www").mkdir()
        with FileServer(workdir / "www") as server:
            repos = AptRepos(workdir, server, pool, tuple(minors or (default_minor(),)))
            try:
                yield repos
            finally:
                repos.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
