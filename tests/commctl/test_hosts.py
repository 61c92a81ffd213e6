"""Hosts through commctl: create, list, join/unjoin, and ssh with the stored key."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from commctl import sshcmd
from commctl.exitstatus import ExitStatus
from tests.commctl.conftest import Commctl


def test_host_lifecycle(commctl: Commctl, key_file: Path) -> None:
    commctl("cluster", "create", "c1")
    created = commctl("host", "create", "-c", "c1", "192.168.152.110", str(key_file))
    assert (created.code, created.out) == (0, "Created host 192.168.152.110.\n")
    # The same key again is an idempotent re-PUT (the seed's positional form, or -s).
    assert "already exists" in commctl("host", "create", "-c", "c1", "-s", str(key_file),
                                       "192.168.152.110").out
    creds = commctl.server.storage.reveal_creds("192.168.152.110")
    assert base64.b64decode(creds["ssh_priv_key"]) == key_file.read_bytes()
    assert creds["remote_user"] == "root"

    hosts = commctl("-o", "json", "host", "list").json
    assert [h["address"] for h in hosts] == ["192.168.152.110"]
    assert hosts[0]["cluster"] == "c1" and "ssh_priv_key" not in hosts[0]
    table = commctl("host", "list").out.splitlines()
    assert table[0].split()[:4] == ["ADDRESS", "STATUS", "CLUSTER", "OS"]
    assert table[1].split()[:3] == ["192.168.152.110", "investigating", "c1"]
    assert commctl("-o", "json", "host", "list", "c1").json == hosts
    assert commctl("-o", "json", "host", "list", "--status", "active").json == []
    assert commctl("host", "list", "--status", "active").out == "No hosts.\n"

    got = commctl("host", "get", "192.168.152.110")
    assert "status:" in got.out and "investigating" in got.out
    assert commctl("-o", "json", "host", "get", "192.168.152.110").json == hosts[0]
    status = commctl("-o", "json", "host", "status", "192.168.152.110").json
    assert status["type"] == "host_only" and status["host"]["status"] == "investigating"
    lines = commctl("host", "status", "192.168.152.110").out.splitlines()
    assert ["host.status:", "investigating"] in [line.split() for line in lines]

    deleted = commctl("host", "delete", "192.168.152.110")
    assert (deleted.code, deleted.out) == (0, "Deleted host 192.168.152.110.\n")
    assert commctl("host", "get", "192.168.152.110").code == ExitStatus.NOT_FOUND


def test_host_create_options(commctl: Commctl, key_file: Path) -> None:
    result = commctl("-o", "json", "host", "create", "-u", "admin", "-p", "2222",
                     "-s", str(key_file), "10.0.0.9")
    assert result.code == 0 and result.json["ssh_port"] == 2222
    assert commctl.server.storage.reveal_creds("10.0.0.9")["remote_user"] == "admin"


def test_host_create_errors(commctl: Commctl, key_file: Path, tmp_path: Path) -> None:
    no_cluster = commctl("host", "create", "-c", "headache", "10.0.0.1", str(key_file))
    assert no_cluster.code == ExitStatus.CONFLICT
    assert no_cluster.err == "commctl: cluster 'headache' does not exist\n"
    no_key = commctl("host", "create", "10.0.0.1")
    assert no_key.code == ExitStatus.USAGE and "private key" in no_key.err
    missing = commctl("host", "create", "10.0.0.1", str(tmp_path / "nope"))
    assert missing.code == ExitStatus.USAGE and "cannot read" in missing.err
    bad_address = commctl("host", "create", "300.1.1.1", str(key_file))
    assert bad_address.code == ExitStatus.INVALID
    assert bad_address.err.startswith("commctl: address: ")


def test_join_and_unjoin(commctl: Commctl, key_file: Path) -> None:
    commctl("cluster", "create", "c1")
    commctl("host", "create", "10.0.0.2", str(key_file))
    joined = commctl("host", "join", "10.0.0.2", "c1")
    assert (joined.code, joined.out) == (0, "Host 10.0.0.2 is in cluster c1.\n")
    assert commctl("-o", "json", "host", "get", "10.0.0.2").json["cluster"] == "c1"
    assert commctl("-o", "json", "cluster", "get", "c1").json["hosts"]["total"] == 1
    # Without a cluster, unjoin takes the host's own.
    left = commctl("host", "unjoin", "10.0.0.2")
    assert (left.code, left.out) == (0, "Host 10.0.0.2 left cluster c1.\n")
    assert commctl("-o", "json", "host", "get", "10.0.0.2").json["cluster"] == ""
    assert commctl("host", "unjoin", "10.0.0.2").code == ExitStatus.ERROR
    assert commctl("host", "join", "10.0.0.2", "nope").code == ExitStatus.NOT_FOUND


# -- host ssh -------------------------------------------------------------------

FAKE_SSH = """#!/bin/sh
# Records its arguments, and the -i key file's mode and content, then exits $FAKE_SSH_EXIT.
key=
prev=
for arg in "$@"; do
    [ "$prev" = -i ] && key=$arg
    prev=$arg
done
python3 - "$FAKE_SSH_RECORD" "$key" "$@" <<'PY'
import json, os, stat, sys
record, key, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
info = os.stat(key)
json.dump({"argv": argv, "key": key, "mode": stat.S_IMODE(info.st_mode),
           "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(key)).st_mode),
           "content": open(key).read()}, open(record, "w"))
PY
exit "${FAKE_SSH_EXIT:-0}"
"""


@pytest.fixture
def fake_ssh(tmp_path: Path) -> Path:
    path = tmp_path / "fake-ssh"
    path.write_text(FAKE_SSH)
    path.chmod(0o755)
    return path


def test_ssh_uses_the_stored_key_0600_and_removes_it(commctl: Commctl, key_file: Path,
                                                      fake_ssh: Path, tmp_path: Path) -> None:
    commctl("host", "create", "-u", "admin", "-p", "2222", "127.0.100.5", str(key_file))
    record = tmp_path / "record.json"
    result = commctl("host", "ssh", "127.0.100.5", "-v", "uptime",
                     COMMCTL_SSH=str(fake_ssh), FAKE_SSH_RECORD=str(record), FAKE_SSH_EXIT="0")
    assert result.code == 0, result.err
    seen = json.loads(record.read_text())
    key = seen["key"]
    assert seen["argv"] == ["-i", key, "-o", "IdentitiesOnly=yes", "-l", "admin", "-p", "2222",
                            "-v", "127.0.100.5", "uptime"]
    assert seen["mode"] == 0o600 and seen["dir_mode"] == 0o700
    assert seen["content"] == key_file.read_text()
    assert not os.path.exists(key) and not os.path.exists(os.path.dirname(key))


def test_ssh_checks_the_host_key_pinned_at_registration(
        commctl: Commctl, key_file: Path, fake_ssh: Path, tmp_path: Path, server: Any) -> None:
    commctl("host", "create", "-p", "2222", "127.0.100.6", str(key_file))
    pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinnedPinnedPinnedPinnedPinnedPinnedPinnedPi"
    server.storage.update_host("127.0.100.6", {"ssh_host_key": pinned})
    record = tmp_path / "record.json"
    script = tmp_path / "copy-known-hosts"
    # The fake ssh records argv; read the known_hosts file while it still exists.
    script.write_text(FAKE_SSH.replace(
        'python3 - "$FAKE_SSH_RECORD"',
        'for a in "$@"; do case "$a" in UserKnownHostsFile=*) cp "${a#*=}" "$COPY";; esac; '
        'done\npython3 - "$FAKE_SSH_RECORD"'))
    script.chmod(0o755)
    copy = tmp_path / "known_hosts"
    result = commctl("host", "ssh", "127.0.100.6", "true", COMMCTL_SSH=str(script),
                     FAKE_SSH_RECORD=str(record), COPY=str(copy))
    assert result.code == 0, result.err
    argv = json.loads(record.read_text())["argv"]
    assert "StrictHostKeyChecking=yes" in argv
    assert copy.read_text() == f"[127.0.100.6]:2222 {pinned}\n"


def test_ssh_failure_is_its_exit_code_and_the_key_is_gone(commctl: Commctl, key_file: Path,
                                                         fake_ssh: Path, tmp_path: Path) -> None:
    commctl("host", "create", "127.0.100.6", str(key_file))
    record = tmp_path / "record.json"
    result = commctl("host", "ssh", "127.0.100.6", "--", "-p", "9876",
                     COMMCTL_SSH=str(fake_ssh), FAKE_SSH_RECORD=str(record), FAKE_SSH_EXIT="255")
    assert result.code == 255
    seen = json.loads(record.read_text())
    # The operator's -p wins: ssh keeps the first -p, so commctl leaves its own out.
    assert seen["argv"][-3:] == ["-p", "9876", "127.0.100.6"]
    assert seen["argv"].count("-p") == 1 and "root" in seen["argv"]
    assert not os.path.exists(seen["key"])


def test_ssh_key_is_removed_on_ctrl_c(commctl: Commctl, key_file: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    commctl("host", "create", "127.0.100.7", str(key_file))
    seen: list[str] = []

    def interrupted(argv: list[str], env: dict[str, str]) -> int:
        key = argv[argv.index("-i") + 1]
        seen.append(key)
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        raise KeyboardInterrupt

    monkeypatch.setattr("commctl.sshcmd.subprocess.call", interrupted)
    result = commctl("host", "ssh", "127.0.100.7", COMMCTL_SSH="/bin/false")
    assert result.code == ExitStatus.INTERRUPTED
    assert seen and not os.path.exists(seen[0])


def test_ssh_to_an_unknown_host_is_not_found(commctl: Commctl, fake_ssh: Path) -> None:
    result = commctl("host", "ssh", "10.9.9.9", COMMCTL_SSH=str(fake_ssh))
    assert result.code == ExitStatus.NOT_FOUND


@pytest.mark.parametrize(("extra", "options", "command"), [
    ([], [], []),
    (["-v", "-p", "9876"], ["-v", "-p", "9876"], []),
    (["-vp9876", "ls", "-l"], ["-vp9876"], ["ls", "-l"]),
    (["-o", "LogLevel=ERROR", "--", "-x"], ["-o", "LogLevel=ERROR"], ["-x"]),
    (["--", "uptime"], [], ["uptime"]),
])
def test_split_ssh_args(extra: list[str], options: list[str], command: list[str]) -> None:
    assert sshcmd.split_ssh_args(extra) == (options, command)


def test_operator_login_name_wins() -> None:
    argv = sshcmd.ssh_command("ssh", "/k", "root", 22, "h", ["-l", "me"])
    assert argv == ["ssh", "-i", "/k", "-o", "IdentitiesOnly=yes", "-p", "22", "-l", "me", "h"]
    # An -l inside another option's value is not a login name.
    argv = sshcmd.ssh_command("ssh", "/k", "root", None, "h", ["-o", "-l"])
    assert "root" in argv


def test_ssh_key_is_removed_on_sigterm(commctl: Commctl, key_file: Path, tmp_path: Path) -> None:
    """SIGTERM (or SIGHUP: a closed terminal) would end Python without its finally."""
    commctl("host", "create", "127.0.100.8", str(key_file))
    killer = tmp_path / "killer-ssh"
    record = tmp_path / "key-path"
    killer.write_text('#!/bin/sh\nprev=\nfor a in "$@"; do [ "$prev" = -i ] && echo "$a" > "$RECORD"; '
                      'prev=$a; done\nkill -TERM $PPID\nsleep 5\n')
    killer.chmod(0o755)
    result = commctl("host", "ssh", "127.0.100.8", COMMCTL_SSH=str(killer), RECORD=str(record))
    assert result.code == 128 + 15
    key = record.read_text().strip()
    assert key and not os.path.exists(key)
