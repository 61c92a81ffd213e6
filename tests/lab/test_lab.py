"""Lab hosts (tools/lab): real sshd hosts on loopback, reboots, stand-ins, cleanup.

Needs root. The first run on a machine builds the cached base (debootstrap,
about a minute); after that this file takes well under a minute.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.lab import Lab, LabHost, addresses
from tools.lab.addresses import listening

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REBOOT_TIME = 1.0


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root (namespaces, overlayfs, chroot)", pytrace=False)
    with Lab(reboot_time=REBOOT_TIME) as lab:
        lab.start_hosts(4)
        yield lab


def ssh(lab: Lab, host: LabHost, command: str, *options: str, address: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess:
    argv = ["ssh", "-i", lab.private_key_path, "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", *options,
            "-p", str(host.port), f"root@{address or host.address}", command]
    if not any(o.startswith("StrictHostKeyChecking") for o in options):
        argv[1:1] = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def keyscan_fingerprint(host: LabHost, address: str | None = None) -> str:
    scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(host.port), address or host.address],
                          capture_output=True, text=True, timeout=10)
    lines = subprocess.run(["ssh-keygen", "-lf", "-"], input=scan.stdout, capture_output=True, text=True)
    return lines.stdout.split()[1]


def wait_for(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def test_ssh_with_the_lab_key_and_the_pinned_host_key(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    assert ssh(lab, host, "true").returncode == 0
    assert oct(os.stat(lab.private_key_path).st_mode & 0o777) == "0o600"
    assert base64.b64decode(lab.private_key_b64) == Path(lab.private_key_path).read_bytes()
    # the fingerprint the lab reports is the one sshd presents, and pinning it works
    assert keyscan_fingerprint(host) == host.host_key_fingerprint()
    known = tmp_path / "known_hosts"
    known.write_text(f"{host.address} {host.host_public_key()}\n")
    pinned = ssh(lab, host, "cat /etc/commissaire-lab /etc/os-release",
                 "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}")
    assert pinned.returncode == 0, pinned.stderr
    assert "ID=debian" in pinned.stdout
    # sshd listens on its own address only
    sshd = host.sshd_pid()
    assert sshd is not None
    inodes = {int(os.readlink(f"/proc/{sshd}/fd/{fd}")[8:-1]) for fd in os.listdir(f"/proc/{sshd}/fd")
              if os.readlink(f"/proc/{sshd}/fd/{fd}").startswith("socket:")}
    assert [k for k, inode in listening().items() if inode in inodes] == [(host.address, host.port)]
    # each host has its own host key
    assert len({h.host_key_fingerprint() for h in lab.hosts}) == len(lab.hosts)


def test_writes_stay_inside_their_host(lab: Lab) -> None:
    host, other = lab.hosts[0], lab.hosts[1]
    name = f"lab-probe-{uuid.uuid4().hex}"
    done = ssh(lab, host, f"echo inside > /root/{name} && echo inside > /etc/{name} && echo t > /tmp/{name}"
                          f" && mkdir -p /opt/{name}")
    assert done.returncode == 0, done.stderr
    for path in (f"/root/{name}", f"/etc/{name}", f"/tmp/{name}", f"/opt/{name}"):
        assert not os.path.exists(path), f"{path} landed on the real machine"
        assert host.file_exists(path)
        assert not other.file_exists(path)
    assert host.read_file(f"/etc/{name}") == "inside\n"
    assert host.run(f"cat /etc/{name}").stdout == "inside\n"
    # root's shell startup is the base's, not the machine's
    env = ssh(lab, host, "echo $HOME; type pyenv >/dev/null 2>&1 && echo pyenv || echo no-pyenv")
    assert env.stdout.split() == ["/root", "no-pyenv"]


def test_reboot_over_ssh_comes_back_with_a_new_boot_id(lab: Lab) -> None:
    host = lab.hosts[1]
    before = host.boot_id()
    ssh(lab, host, "reboot")  # may or may not see the connection drop
    wait_for(lambda: not host.is_up(), 2.0, "host going down after `reboot`")
    assert ssh(lab, host, "true", timeout=10).returncode == 255
    took = wait_for(lambda: ssh(lab, host, "true", timeout=10).returncode == 0, REBOOT_TIME + 8,
                    "host back after `reboot`")
    assert took >= REBOOT_TIME * 0.5
    after = ssh(lab, host, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    assert after == host.boot_id() != before
    reboots = [r for r in host.requests() if r["cmd"] == "reboot"]
    assert reboots and reboots[-1]["boot_id"] == before


def test_stop_and_start(lab: Lab) -> None:
    host = lab.hosts[2]
    assert ssh(lab, host, "echo kept > /root/kept").returncode == 0
    before = host.boot_id()
    host.stop()
    assert not host.is_up()
    assert ssh(lab, host, "true", timeout=10).returncode == 255
    # the filesystem stays readable while stopped
    assert host.read_file("/root/kept") == "kept\n"
    assert host.boot_id() == before
    host.start()
    assert host.is_up()
    assert host.boot_id() != before
    assert ssh(lab, host, "cat /root/kept").stdout == "kept\n"


def test_rpm_ostree_deploy_applies_at_the_next_boot(lab: Lab) -> None:
    host = lab.hosts[3]

    def booted_version() -> str:
        status = ssh(lab, host, "rpm-ostree status --json")
        assert status.returncode == 0, status.stderr
        deployments = json.loads(status.stdout)["deployments"]
        return next(d["version"] for d in deployments if d["booted"])

    assert ssh(lab, host, "rpm-ostree deploy 2.0").returncode == 0
    assert booted_version() != "2.0"
    assert ssh(lab, host, "systemctl is-active sshd").stdout == "active\n"
    boot = host.boot_id()
    host.reboot()
    assert booted_version() == "2.0"
    deploys = [r for r in host.requests() if r["cmd"] == "rpm-ostree" and r["argv"][:1] == ["deploy"]]
    assert deploys[-1]["argv"] == ["deploy", "2.0"] and deploys[-1]["boot_id"] == boot
    assert all(isinstance(r["time"], float) for r in host.requests())
    # an upgrade is the current version + ".1", at the next boot too
    assert ssh(lab, host, "dnf -y upgrade").returncode == 0
    host.reboot(delay=0)
    assert booted_version() == "2.0.1"


def test_change_host_key(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    before, boot = host.host_key_fingerprint(), host.boot_id()
    host.change_host_key()
    assert host.host_key_fingerprint() != before
    assert keyscan_fingerprint(host) == host.host_key_fingerprint()
    assert host.boot_id() == boot  # sshd restarted, the host did not reboot
    known = tmp_path / "known_hosts"
    known.write_text(f"{host.address} {host.host_public_key()}\n")
    assert ssh(lab, host, "true", "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={known}").returncode == 0


def test_extra_addresses_reach_the_same_host(lab: Lab) -> None:
    host = lab.hosts[0]
    extra = lab.add_addresses(host, 3)
    assert len(extra) == 3 and host.address not in extra
    for address in extra:
        assert ssh(lab, host, "hostname", address=address).stdout.strip() == host.hostname
    assert keyscan_fingerprint(host, extra[0]) == host.host_key_fingerprint()


def test_only_loopback_addresses(lab: Lab) -> None:
    for bad in ("10.0.0.1", "127.0.0.1", "192.168.1.10", "::1", "localhost"):
        with pytest.raises(ValueError):
            lab.start_hosts(1, first=bad)
    with pytest.raises(ValueError):
        lab.add_addresses(lab.hosts[0], ["172.17.0.1"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _mentions(workdir: str) -> list[str]:
    """Mount table lines, in any process's namespace, under workdir."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found += [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if workdir in line]
        except OSError:
            pass
    return found


def test_close_leaves_no_mounts_processes_or_files() -> None:
    lab = Lab()
    hosts = lab.start_hosts(2)
    lab.add_addresses(hosts[0], 2)
    pids = [h.sshd_pid() or 0 for h in hosts] + [h._holder_pid() for h in hosts] + [p.pid for p in lab._forwarders]
    assert all(pids)
    workdir = lab.workdir
    assert _mentions(workdir)
    lab.close()
    assert not [pid for pid in pids if _alive(pid)]
    assert not _mentions(workdir)
    assert workdir not in subprocess.run(["findmnt", "-rn"], capture_output=True, text=True).stdout
    assert not os.path.exists(workdir)
    assert not any(h.address == a for h in hosts for (a, _port) in listening())


def test_a_killed_owner_leaves_no_processes() -> None:
    script = (
        "import json, time\nfrom tools.lab import Lab\nlab = Lab()\nhosts = lab.start_hosts(1)\n"
        "print(json.dumps({'dir': lab.workdir, 'pids': [hosts[0].sshd_pid(), hosts[0]._holder_pid()]}),"
        " flush=True)\ntime.sleep(60)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    try:
        info = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    wait_for(lambda: not any(_alive(p) for p in info["pids"]), 5, "lab processes dying with their owner")
    wait_for(lambda: not _mentions(info["dir"]), 5, "lab mounts vanishing with their owner")
    # the next Lab() would sweep these; do not leave them meanwhile
    shutil.rmtree(info["dir"])
    addresses.sweep_stale()
