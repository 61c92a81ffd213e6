"""The lab's base root filesystem: one Debian debootstrap, built once and cached.

Every lab host mounts it read-only as the lower layer of its own overlayfs, so
it must never change once built: it lives in a directory named after a hash of
everything that goes into it (this file and tools/lab/standins/), is built in
a temporary directory and renamed into place only when complete, under a lock
file so that concurrent processes build it once.

The plain debootstrap output is cached too (``debootstrap-<hash>``, keyed by
the debootstrap arguments only): changing a stand-in then costs a copy of it
(seconds) instead of a new debootstrap (about a minute).

Two profiles are built from that one debootstrap:

* ``lab`` (``base-<hash>``): /etc/commissaire-lab marks it (facts report
  os=lab) and stand-ins shadow the package, service, reboot and OSTree
  commands (see tools/lab/standins/labcmd).
* ``debian`` (``base-debian-<hash>``): a plain Debian 12 as a fresh cloud
  image has it (facts report os=debian, version 12; empty apt lists), with
  Debian's own apt-get and dpkg. Only systemctl, reboot and shutdown are
  stand-ins, as there is no systemd in a chroot; systemctl keeps unit state.
  /usr/sbin/policy-rc.d (exit 101) keeps package scripts from starting daemons.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("openssh-server", "python3", "iproute2", "procps")
DEBOOTSTRAP = ("debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE)

STANDINS_DIR = Path(__file__).with_name("standins")
PROFILES = ("lab", "debian")
# Shadow the real commands: /usr/local/{sbin,bin} come first in root's PATH.
STANDIN_NAMES = {
    "lab": ("systemctl", "reboot", "shutdown", "dnf", "yum", "apt-get", "rpm-ostree", "atomic"),
    "debian": ("systemctl", "reboot", "shutdown"),
}
LIB = "usr/local/lib/commissaire-lab"
INIT_PATH = "/" + LIB + "/init"
PROFILE_PATH = LIB + "/profile"  # read by labcmd


class BaseBuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "commissaire-lab"


def version_hash() -> str:
    digest = hashlib.sha256(repr((DEBOOTSTRAP, MIRROR)).encode())
    digest.update(Path(__file__).read_bytes())
    for path in sorted(STANDINS_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _prefix(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown lab profile {profile!r} (known: {', '.join(PROFILES)})")
    return "base-" if profile == "lab" else f"base-{profile}-"


def base_path(profile: str = "lab") -> Path:
    return cache_dir() / f"{_prefix(profile)}{version_hash()}"


def ensure_base(log=print, profile: str = "lab") -> Path:
    """Return the cached base of `profile`, building it first if needed (about a
    minute for the debootstrap, once; seconds for each profile after that)."""
    final = base_path(profile)
    if final.is_dir():
        return final

    def build(tmp: Path) -> None:
        raw = cached("debootstrap-" + hashlib.sha256(repr((DEBOOTSTRAP, MIRROR)).encode()).hexdigest()[:12],
                      _debootstrap, log)
        subprocess.run(["cp", "-a", "--", str(raw), str(tmp)], check=True)
        _customize(tmp, profile)

    built = cached(final.name, build, log)
    _prune_unused_bases(keep=built, profile=profile)
    return built


def _prune_unused_bases(keep: Path, profile: str = "lab") -> None:
    """Remove bases of older versions of `profile` that no running lab mounts (~200 MB each)."""
    mounted = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            mounted.append(Path(f"/proc/{pid}/mountinfo").read_text())
        except OSError:
            pass
    in_use = "".join(mounted)
    name = re.compile(re.escape(_prefix(profile)) + "[0-9a-f]{12}")
    for old in cache_dir().glob(_prefix(profile) + "*"):
        if old != keep and name.fullmatch(old.name) and old.is_dir() and f"lowerdir={old}," not in in_use:
            shutil.rmtree(old, ignore_errors=True)


def cached(name: str, build, log) -> Path:
    """Build cache_dir()/name once with build(tmp_dir): in a temp dir, under a lock
    (concurrent processes build it once), renamed into place when complete."""
    final = cache_dir() / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / (name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if final.is_dir():
            return final
        for stale in final.parent.glob(name + ".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a build that was killed
        tmp = final.parent / f"{name}.tmp-{os.getpid()}"
        started = time.monotonic()
        log(f"lab: building {final} (once)")
        try:
            build(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp, final)
        log(f"lab: built {name} in {time.monotonic() - started:.1f} s")
    return final


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    install = ["apt-get", "install", "-y", "-q", "debootstrap"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BaseBuildError("cannot install debootstrap: " + done.stderr[-2000:])


def _debootstrap(target: Path) -> None:
    _ensure_debootstrap()
    # A private mount namespace: the /proc and /sys debootstrap mounts in the
    # target vanish with it even if the build is killed half-way.
    cmd = ["unshare", "--mount", "--propagation", "private", "--", *DEBOOTSTRAP, str(target), MIRROR]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BaseBuildError(f"debootstrap failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _customize(root: Path, profile: str = "lab") -> None:
    # Host keys are per lab host; a shared one would make every host the same.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Nothing may start services: there is no init, and package scripts run
    # by a playbook must not try (invoke-rc.d and deb-systemd-invoke ask this).
    _write(root, "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    # The lab profile has no enabled units; the debian one keeps what Debian
    # enabled (the systemctl stand-in reads these links).
    patterns = ["etc/rc?.d/S*"]
    if profile == "lab":
        patterns += ["etc/systemd/system/*.wants/*", "etc/systemd/system/*.service"]
    for pattern in patterns:
        for link in root.glob(pattern):
            link.unlink()
    shutil.copy(STANDINS_DIR / "sshd_config", root / "etc/ssh/sshd_config")
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    lib = root / LIB
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("labcmd", "init"):
        shutil.copy(STANDINS_DIR / name, lib / name)
        (lib / name).chmod(0o755)
    _write(root, PROFILE_PATH, profile + "\n")
    for bindir in ("usr/local/sbin", "usr/local/bin"):
        (root / bindir).mkdir(parents=True, exist_ok=True)
        for name in STANDIN_NAMES[profile]:
            link = root / bindir / name
            link.unlink(missing_ok=True)
            link.symlink_to(f"/{LIB}/labcmd")
    if profile == "lab":
        _write(root, "etc/commissaire-lab", "commissaire lab host: see tools/lab in the commissaire repository\n")
    _write(root, "var/lib/lab/version", "1.0\n")
    # root's shell startup is the base's own, never the build machine's
    for dot in (".bashrc", ".profile"):
        shutil.copy(STANDINS_DIR / "bashrc", root / "root" / dot)
    for name in ("etc/hostname", "etc/machine-id"):
        (root / name).unlink(missing_ok=True)  # per host
    # Smaller base, and no stale package lists that look like a real mirror's;
    # the debian profile has none at all, as a fresh cloud image.
    lists = "var/lib/apt/lists/*_Packages" if profile == "lab" else "var/lib/apt/lists/*_*"
    for pattern in ("var/cache/apt/archives/*.deb", lists, "var/log/*.log"):
        for path in root.glob(pattern):
            path.unlink()
