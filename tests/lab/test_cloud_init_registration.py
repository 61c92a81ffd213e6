"""End to end: `commctl user-data` run on a lab host as cloud-init would run it.

The control plane (AllInOneStack) and a lab host (a real sshd in its own chroot and
namespaces) run on this machine. `commctl user-data` writes the #cloud-config, which
cloud-init's own schema check must accept; then, INSIDE the host, we do what
cloud-init does with it: write each `write_files` entry with its permissions, give
root the `ssh_authorized_keys` (the host starts with none, so the server can only
log in with what the user-data authorized), and run each `runcmd` entry through
`sh -c`. The register script (python3: the lab image has no curl) registers the host,
the server investigates and bootstraps it over SSH, and it ends up in the cluster.

Why the address is sent: lab hosts share the machine's network namespace, so the
script's connection to 127.0.0.1 comes *from* 127.0.0.1 (nothing binds the lab
address), as a cloud host's would come from its NAT gateway. Registered by the
connection, the host would be 127.0.0.1. The user-data is therefore made with the
host's literal address (`--address-source 127.0.100.x`): `interface` would not do
here, since `ip route get 127.0.0.1` answers with source 127.0.0.1 too.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.waiting import wait_for
from tools.lab import Lab, LabHost
from tools.stack import AllInOneStack, running

pytestmark = pytest.mark.integration

COMMCTL = str(Path(sys.executable).parent / "commctl")
LOG = "/var/log/commissaire-register.log"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(reboot_time=1.0) as lab:
        yield lab


@pytest.fixture(scope="module")
def stack() -> Iterator[AllInOneStack]:
    with running(AllInOneStack()) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: AllInOneStack) -> requests.Session:
    return stack.session()



def user_data(stack: AllInOneStack, lab: Lab, cluster: str, address: str,
              tmp_path: Path) -> Path:
    """`commctl user-data` as an operator runs it (no configuration file needed)."""
    outfile = tmp_path / f"{cluster}.userdata"
    made = subprocess.run(
        [COMMCTL, "user-data", "-e", f"http://127.0.0.1:{stack.port}", "-c", cluster,
         "-u", stack.auth[0], "-p", stack.auth[1], "-s", lab.private_key_path,
         "--address-source", address, "-o", str(outfile)],
        capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path),
                                                         "PATH": "/usr/bin:/bin"})
    assert made.returncode == 0, made.stderr
    assert outfile.read_text().startswith("#cloud-config\n")
    return outfile


def check_schema(path: Path) -> None:
    """cloud-init's own verdict on the file (Debian's cloud-init, /usr/bin/cloud-init)."""
    checked = subprocess.run(["/usr/bin/cloud-init", "schema", "--config-file", str(path)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid cloud-config" in checked.stdout, checked.stdout


def run_checked(host: LabHost, cmd: str) -> subprocess.CompletedProcess:
    done = host.run(cmd)
    assert done.returncode == 0, (cmd, done.stdout, done.stderr)
    return done


def apply_as_cloud_init(host: LabHost, config: dict[str, Any]) -> None:
    """What cloud-init's modules do with these keys, inside the host."""
    # cc_ssh / cc_set_passwords: root may log in, with the given keys.
    assert config.get("disable_root") is False
    keys = config["ssh_authorized_keys"]
    run_checked(host, "mkdir -p /root/.ssh && chmod 0700 /root/.ssh")
    host.run("touch /root/.ssh/authorized_keys")
    existing = host.read_file("/root/.ssh/authorized_keys")
    host.write_file("/root/.ssh/authorized_keys", existing + "".join(k + "\n" for k in keys),
                    0o600)
    # cc_write_files: each file, its owner and its permissions.
    for entry in config["write_files"]:
        path = entry["path"]
        run_checked(host, f"mkdir -p {shlex.quote(str(Path(path).parent))}")
        host.write_file(path, entry["content"])
        run_checked(host, f"chmod {shlex.quote(entry.get('permissions', '0644'))} "
                          f"{shlex.quote(path)}")
        if "owner" in entry:
            run_checked(host, f"chown {shlex.quote(entry['owner'])} {shlex.quote(path)}")
    # cc_runcmd: a string is run by the shell as is, a list is shell-quoted first.
    for entry in config["runcmd"]:
        command = entry if isinstance(entry, str) else shlex.join(str(a) for a in entry)
        run_checked(host, command)


def register_log(host: LabHost) -> str:
    return host.read_file(LOG) if host.file_exists(LOG) else "(no register log)"


@pytest.mark.parametrize("manager", [None, "trivial"])
def test_user_data_registers_the_lab_host_as_cloud_init_would(
        api: requests.Session, stack: AllInOneStack, lab: Lab, tmp_path: Path,
        manager: str | None) -> None:
    base = stack.base_url
    (host,) = lab.start_hosts(1)
    cluster = "cloudinit" if manager is None else "cloudinit-trivial"
    body: dict[str, Any] = {}
    if manager:
        # The trivial container manager registers every node without contacting
        # anything (commissaire_service/containermgr/managers.py: TrivialManager), so the
        # investigator's _finish makes the host `active` instead of `disassociated`.
        assert api.put(f"{base}/containermanager/{manager}", json={
            "type": "trivial", "options": {}}).status_code == 201
        body["container_manager"] = manager
    assert api.put(f"{base}/cluster/{cluster}", json=body).status_code == 201

    path = user_data(stack, lab, cluster, host.address, tmp_path)
    check_schema(path)
    config = yaml.safe_load(path.read_text())
    assert config["ssh_authorized_keys"] == [lab.public_key]

    # A fresh image: root has no authorized key yet, cloud-init gives it the user-data's.
    run_checked(host, ": > /root/.ssh/authorized_keys")
    apply_as_cloud_init(host, config)
    mode = run_checked(host, "stat -c '%a %U:%G' /var/lib/commissaire/register").stdout
    assert mode.split() == ["700", "root:root"]
    assert lab.public_key in host.read_file("/root/.ssh/authorized_keys")

    expected = "active" if manager else "disassociated"

    def settled() -> dict[str, Any] | None:
        response = api.get(f"{base}/host/{host.address}")
        if response.status_code != 200:
            return None
        found = response.json()
        return found if found.get("status") in ("active", "disassociated", "failed") else None

    try:
        done = wait_for(settled, 120, f"host {host.address} registered and bootstrapped")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nregister log:\n{register_log(host)}") from None
    assert done["status"] == expected, (done["status_reason"], register_log(host))
    assert done["address"] == host.address
    assert done["bootstrapped"] is True
    assert done["host_key_fingerprint"] == host.host_key_fingerprint()
    assert api.get(f"{base}/cluster/{cluster}/hosts").json() == [host.address]
    # The connection came from 127.0.0.1: the body's address won, not the connection's.
    assert api.get(f"{base}/host/127.0.0.1").status_code == 404
    assert [h["address"] for h in api.get(f"{base}/hosts").json()].count("127.0.0.1") == 0
    log = register_log(host)
    assert f"registered {host.address}" in log and f"in cluster {cluster}" in log, log
