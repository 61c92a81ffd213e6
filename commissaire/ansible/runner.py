"""The one place that runs Ansible (through ansible-runner).

Each run gets a private data dir (0700) holding the inventory, one 0600 file per
private key, a known_hosts file of the pinned host keys and the SSH control
sockets; the dir is removed when the run ends, whatever happens. Progress is
read from ansible-runner's event callbacks, never from stdout. Each host ends
with one distinct outcome: ok, unreachable, auth_failed, host_key_mismatch or
failed (a task failed), with a message a person can act on.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ansible_runner

from commissaire import reach

logger = logging.getLogger(__name__)

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"

OK = "ok"
UNREACHABLE = "unreachable"
AUTH_FAILED = "auth_failed"
HOST_KEY_MISMATCH = "host_key_mismatch"
FAILED = "failed"


@dataclasses.dataclass
class Target:
    """A host to act on, with what it takes to reach it."""

    address: str
    private_key: str  # PEM/OpenSSH text; written to a 0600 file for the run only
    user: str = "root"
    port: int = 22
    host_key: str = ""  # pinned public key ("ssh-ed25519 AAAA..."); "" = first contact
    hostvars: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:  # never show the key
        return f"Target({self.user}@{self.address}:{self.port})"


@dataclasses.dataclass
class HostResult:
    outcome: str = OK
    message: str = ""
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    changed: int = 0


@dataclasses.dataclass
class RunResult:
    hosts: dict[str, HostResult]
    status: str  # ansible-runner's final status: successful, failed, timeout, canceled

    @property
    def ok(self) -> bool:
        return all(h.outcome == OK for h in self.hosts.values())


@dataclasses.dataclass
class SSHSettings:
    """SSH behaviour of runs. Post-quantum key exchange costs ~3x the CPU of
    curve25519 (FIELD-NOTES); trading it away is the operator's choice."""

    kex_algorithms: str = ""  # "" = OpenSSH's default
    connect_timeout: int = 10
    control_persist: int = 60
    forks: int = 50


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    name = address if port == 22 else f"[{address}]:{port}"
    return f"{name} {public_key.strip()}"


def classify_unreachable(message: str, target: Target) -> tuple[str, str]:
    """Tell an unreachable host from a refused key or a changed host key."""
    text = message or ""
    if ("REMOTE HOST IDENTIFICATION HAS CHANGED" in text
            or "Host key verification failed" in text
            or "host key for" in text.lower() and "differs" in text.lower()):
        return HOST_KEY_MISMATCH, (
            f"the SSH host key of {target.address} is not the one pinned at registration; "
            "refusing to connect (if the host was reinstalled, delete and re-add it)")
    if ("Permission denied" in text or "Authentication failed" in text
            or "Too many authentication failures" in text):
        return AUTH_FAILED, (
            f"SSH authentication as {target.user} on {target.address} failed: "
            "the private key was refused")
    detail = text.split("Failed to connect to the host via ssh:", 1)[-1].strip() or "no answer"
    return UNREACHABLE, f"cannot reach {target.address}:{target.port} over SSH: {detail}"


#: Called as on_ok(host, task_name, result) for every successful task.
OnOk = Callable[[str, str, dict[str, Any]], None]


class _Events:
    """Collects per-host outcomes from ansible-runner events."""

    def __init__(self, targets: dict[str, Target], on_ok: OnOk | None = None) -> None:
        self.targets = targets
        self.results = {name: HostResult() for name in targets}
        self.on_ok = on_ok

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if host not in self.results:
            return True
        result = self.results[host]
        res = data.get("res") or {}
        if kind == "runner_on_ok":
            result.facts.update(res.get("ansible_facts") or {})
            result.changed += bool(res.get("changed"))
            if self.on_ok is not None:
                try:
                    self.on_ok(host, str(data.get("task", "")), res)
                except Exception:  # a progress hook must not break the run
                    logger.exception("progress hook failed for %s", host)
        elif kind == "runner_on_unreachable" and result.outcome == OK:
            result.outcome, result.message = classify_unreachable(
                str(res.get("msg", "")), self.targets[host])
        elif kind == "runner_on_failed" and not data.get("ignore_errors") \
                and result.outcome == OK:
            task = data.get("task", "a task")
            msg = res.get("msg") or res.get("stderr") or res.get("module_stderr") or "failed"
            result.outcome = FAILED
            result.message = f"task '{task}' failed on {host}: {str(msg).strip()[:500]}"
        return True  # keep ansible-runner's own artifact handling


def run_playbook(playbook: str, targets: list[Target], extravars: dict[str, Any] | None = None,
                 settings: SSHSettings | None = None, timeout: int = 1800,
                 on_ok: OnOk | None = None) -> RunResult:
    """Run `playbook` (a file name under playbooks/ or a path) against `targets`."""
    settings = settings or SSHSettings()
    reasons = {t.address: reach.refusal(t.address) for t in targets}
    refused = {a: HostResult(UNREACHABLE, why) for a, why in reasons.items() if why}
    targets = [t for t in targets if t.address not in refused]
    if not targets:
        return RunResult(refused, "failed")
    result = _run(playbook, targets, extravars, settings, timeout, on_ok)
    result.hosts.update(refused)
    return result


def _run(playbook: str, targets: list[Target], extravars: dict[str, Any] | None,
         settings: SSHSettings, timeout: int, on_ok: OnOk | None) -> RunResult:
    by_name = {t.address: t for t in targets}
    private = Path(tempfile.mkdtemp(prefix="commissaire-run-"))
    os.chmod(private, 0o700)
    events = _Events(by_name, on_ok)
    try:
        inventory = _write_inventory(private, targets)
        envvars = _environment(private, settings)
        path = Path(playbook) if os.path.isabs(playbook) else PLAYBOOKS / playbook
        runner = ansible_runner.run(
            private_data_dir=str(private),
            ident=uuid.uuid4().hex,
            playbook=str(path),
            inventory=inventory,
            extravars=extravars or {},
            envvars=envvars,
            event_handler=events,
            forks=min(settings.forks, max(1, len(targets))),
            quiet=True,
            timeout=timeout,
            suppress_env_files=True,
        )
        status = str(runner.status)
        if status in ("timeout", "canceled"):
            for result in events.results.values():
                if result.outcome == OK:
                    result.outcome = FAILED
                    result.message = f"the Ansible run was stopped ({status})"
        return RunResult(events.results, status)
    finally:
        _stop_control_masters(private, targets)
        shutil.rmtree(private, ignore_errors=True)


def _write_inventory(private: Path, targets: list[Target]) -> dict[str, Any]:
    keys = private / "keys"
    keys.mkdir(mode=0o700)
    known_hosts = private / "known_hosts"
    lines = []
    hosts: dict[str, Any] = {}
    for n, target in enumerate(targets):
        key_file = keys / f"key{n}"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(target.private_key if target.private_key.endswith("\n")
                         else target.private_key + "\n")
        if target.host_key:
            lines.append(known_hosts_line(target.address, target.port, target.host_key))
        hosts[target.address] = {
            "ansible_host": target.address,
            "ansible_port": target.port,
            "ansible_user": target.user,
            "ansible_ssh_private_key_file": str(key_file),
            "ansible_python_interpreter": "auto_silent",
            # First contact (no pinned key) accepts the key; later runs verify it.
            "ansible_ssh_common_args": "" if target.host_key else
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            **target.hostvars,
        }
    known_hosts.write_text("\n".join(lines) + "\n")
    return {"all": {"hosts": hosts}}


def _ssh_args(private: Path, settings: SSHSettings) -> str:
    args = [
        "-o ControlMaster=auto",
        f"-o ControlPersist={settings.control_persist}s",
        f"-o UserKnownHostsFile={private / 'known_hosts'}",
        "-o StrictHostKeyChecking=yes",
        "-o IdentitiesOnly=yes",
        "-o BatchMode=yes",
        f"-o ConnectTimeout={settings.connect_timeout}",
    ]
    if settings.kex_algorithms:
        args.append(f"-o KexAlgorithms={settings.kex_algorithms}")
    return " ".join(args)


def _environment(private: Path, settings: SSHSettings) -> dict[str, str]:
    for sub in ("cp", "tmp", "home"):
        (private / sub).mkdir(mode=0o700)
    bin_dir = os.path.dirname(sys.executable)
    return {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_HOME": str(private / "home"),
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_REMOTE_TMP": "/tmp/.commissaire-ansible",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
        # %C (a hash of host, port, user) also lets us stop the masters afterwards.
        "ANSIBLE_SSH_CONTROL_PATH": f"{private / 'cp'}/%%C",
        "ANSIBLE_SSH_ARGS": _ssh_args(private, settings),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_TIMEOUT": str(settings.connect_timeout),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
    }


def _stop_control_masters(private: Path, targets: list[Target]) -> None:
    """ControlPersist masters outlive the run: stop them before removing their dir."""
    control_dir = private / "cp"
    if not control_dir.is_dir() or not any(control_dir.iterdir()):
        return
    for target in targets:
        subprocess.run(
            ["ssh", "-o", f"ControlPath={control_dir}/%C", "-O", "exit",
             "-p", str(target.port), "-l", target.user, target.address],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
