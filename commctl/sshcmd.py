"""`commctl host ssh`: ssh to a host with the credentials the server keeps for it.

The private key exists on disk only while ssh runs: written 0600 into a fresh
0700 temp dir and removed in a finally: also when ssh fails, on Ctrl-C, and on
SIGTERM or SIGHUP (a closed terminal), which would otherwise end Python without
running it. The ssh binary can be replaced with COMMCTL_SSH (tests record what
it was given).
"""
from __future__ import annotations

import base64
import binascii
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from commctl.client import Client, path
from commctl.environment import Environment
from commctl.exitstatus import CommctlError, ExitStatus

# ssh(1) options that take an argument: what follows them is their value, not the host.
_WITH_ARGUMENT = set("BbcDEeFIiJLlmOoPpQRSWw")


def split_ssh_args(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split extra arguments into ssh options (before the address) and a remote command
    (after it), as ssh's own getopt would: `-v -p 2222 uptime` -> ([-v, -p, 2222], [uptime])."""
    args = list(extra)
    if args[:1] == ["--"]:
        args = args[1:]
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, args[i + 1:]
        if not arg.startswith("-") or arg == "-":
            break
        options.append(arg)
        # -p2222 carries its value; -p 2222 (or -vp 2222) takes the next word.
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter in _WITH_ARGUMENT:
                if j == len(letters) - 1 and i + 1 < len(args):
                    i += 1
                    options.append(args[i])
                break
        i += 1
    return options, args[i:]


def _given(options: list[str], letter: str) -> bool:
    """Whether the operator's options include -<letter> (alone or in a cluster like -vp)."""
    i = 0
    while i < len(options):
        option = options[i]
        i += 1
        if not option.startswith("-") or option.startswith("--"):
            continue
        for j, found in enumerate(option[1:]):
            if found == letter:
                return True
            if found in _WITH_ARGUMENT:
                if j == len(option) - 2:
                    i += 1  # its value is the next word
                break
    return False


def ssh_command(ssh: str, key_file: str, user: str, port: int | None, address: str,
                extra: Sequence[str], known_hosts: str | None = None) -> list[str]:
    """The ssh command line. A -l or -p the operator passed wins (ssh takes the first one
    given, so ours are left out rather than put first). With `known_hosts` (the host
    key Commissaire pinned), ssh checks the host against it strictly."""
    options, command = split_ssh_args(extra)
    argv = [ssh, "-i", key_file, "-o", "IdentitiesOnly=yes"]
    if known_hosts:
        argv += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    if not _given(options, "l"):
        argv += ["-l", user]
    if port and not _given(options, "p"):
        argv += ["-p", str(port)]
    return argv + options + [address] + command


class _Signalled(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (removing the key), then exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise _Signalled(signum)


@contextmanager
def _signals_unwind() -> Iterator[None]:
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, _raise)
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def child_streams(env: Environment) -> dict[str, Any]:
    """The run's streams that are files, for ssh: a child needs file descriptors, so one
    without (a StringIO) is left to the process's own, as ssh's terminal must be."""
    streams: dict[str, Any] = {}
    for name, stream in (("stdin", env.stdin), ("stdout", env.stdout), ("stderr", env.stderr)):
        try:
            stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation, closed
            continue
        streams[name] = stream
    return streams


def run(client: Client, address: str, extra: Sequence[str], env: Environment) -> int:
    """GET the host and its creds, run ssh with the key, remove the key; ssh's exit code."""
    host = client.get(path("host", address)).data or {}
    creds = client.get(path("host", address, "creds")).data or {}
    try:
        key = base64.b64decode(creds.get("ssh_priv_key") or "", validate=True)
    except (binascii.Error, ValueError):
        raise CommctlError(f"the server's key for {address} is not base64",
                           ExitStatus.SERVER) from None
    if not key or not creds.get("remote_user"):
        raise CommctlError(f"the server has no key and user for {address}", ExitStatus.SERVER)
    if not key.endswith(b"\n"):
        key += b"\n"  # OpenSSH refuses a key file without its final newline
    environ = env.environ
    # which() without a path would search os.environ's PATH.
    ssh = (environ.get("COMMCTL_SSH") or shutil.which("ssh", path=environ.get("PATH", os.defpath))
           or "ssh")
    port = host.get("ssh_port")
    try:
        with _signals_unwind():
            workdir = tempfile.mkdtemp(prefix="commctl-ssh-")  # mode 0700
            try:
                key_file = os.path.join(workdir, "id")
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(key)
                known_hosts = None
                pinned = str(host.get("ssh_host_key") or "").strip()
                if pinned:
                    # The key pinned at registration: the operator gets the same
                    # protection as the control plane, with no prompt.
                    known_hosts = os.path.join(workdir, "known_hosts")
                    name = address if not port or port == 22 else f"[{address}]:{port}"
                    with open(known_hosts, "w", encoding="utf-8") as handle:
                        handle.write(f"{name} {pinned}\n")
                argv = ssh_command(ssh, key_file, str(creds["remote_user"]),
                                   port if isinstance(port, int) else None, address, extra,
                                   known_hosts)
                for stream in (env.stdout, env.stderr):
                    stream.flush()  # what commctl wrote comes before what ssh writes
                return subprocess.call(argv, env=dict(environ), **child_streams(env))
            except FileNotFoundError:
                raise CommctlError(f"cannot run {ssh}: not found (install openssh-client)") from None
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    except _Signalled as exc:
        return 128 + exc.signum
