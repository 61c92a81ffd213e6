"""The one place that runs Ansible (through ansible-runner).

Each run gets a private data dir (0700, named after the owning process so a
service starting later can remove what a killed one left: `remove_stale_run_dirs`)
holding the inventory, one 0600 file per private key, a known_hosts file of the
pinned host keys and the SSH control sockets; the dir is removed when the run
ends, whatever happens. Progress is read from ansible-runner's event callbacks,
never from stdout. Each host ends with one distinct outcome: ok, unreachable,
auth_failed, host_key_mismatch, host_key_not_pinned or failed (a task failed),
with a message a person can act on.

Untrusted text stays text: every string we hand Ansible (inventory, host vars,
extra vars) comes from the API, the store or a host, so it is written into YAML
files with the `!unsafe` tag, which Ansible never renders as a template. We
never use ansible-runner's `inventory=<dict>`/`extravars=` (plain JSON, which
ansible-core trusts as templates). No run happens without a pinned host key:
the investigator pins it (fetched over SSH) before its first run.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypedDict

import ansible_runner
import yaml

from commissaire.outcomes import Outcome
from commissaire.reach import Reach, log_safe, unreachable_reason
from commissaire.ssh import ProbeTarget

logger = logging.getLogger(__name__)

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"  # package data (repo: ./playbooks links here)

OK = Outcome.OK
UNREACHABLE = Outcome.UNREACHABLE
AUTH_FAILED = Outcome.AUTH_FAILED
HOST_KEY_MISMATCH = Outcome.HOST_KEY_MISMATCH
FAILED = Outcome.FAILED
HOST_KEY_NOT_PINNED = Outcome.HOST_KEY_NOT_PINNED

#: The OS profiles of playbooks/os/ (also listed in playbooks/vars/profiles.yml):
#: the only values `commissaire_os` ever takes.
OS_PROFILES = ("atomic", "centos", "debian", "fedora", "lab", "rhel", "ubuntu")

#: Run dirs are `<temp dir>/commissaire-run-<pid>-<process start>-<random>`.
RUN_DIR_PREFIX = "commissaire-run-"
_RUN_DIR_NAME = re.compile(r"commissaire-run-([0-9]+)-([0-9]+)-[A-Za-z0-9_]+")
#: A run dir named before pids were embedded is removed once older than this.
LEGACY_RUN_DIR_AGE = 2 * 3600


@dataclasses.dataclass
class Target:
    """A host to act on, with what it takes to reach it."""

    address: str
    private_key: str  # PEM/OpenSSH text; written to a 0600 file for the run only
    user: str = "root"
    port: int = 22
    host_key: str = ""  # pinned public key ("ssh-ed25519 AAAA..."); "" = refused
    hostvars: dict[str, object] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:  # never show the key
        return f"Target({self.user}@{self.address}:{self.port})"

    @classmethod
    def of(cls, ssh: ProbeTarget, hostvars: Mapping[str, object] | None = None) -> Target:
        """The Ansible target of a host reached as `ssh` (commissaire.ssh.host_target)."""
        return cls(address=ssh.address, private_key=ssh.private_key, user=ssh.user,
                   port=ssh.port, host_key=ssh.host_key, hostvars=dict(hostvars or {}))

    def ssh(self) -> ProbeTarget:
        """The same host, for a light probe."""
        return ProbeTarget(self.address, self.private_key, self.user, self.port, self.host_key)


@dataclasses.dataclass
class HostResult:
    outcome: str = OK
    message: str = ""
    facts: dict[str, object] = dataclasses.field(default_factory=dict)
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
    # The networks this service may reach over SSH (its ssh-allowed-networks).
    reach: Reach = dataclasses.field(default_factory=Reach)


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
    logger.info("SSH to %s:%s failed: %s", target.address, target.port, log_safe(detail))
    return UNREACHABLE, unreachable_reason(target.address, target.port)


class TaskResult(TypedDict, total=False):
    """What a task answered (an event's `event_data.res`): the fields read here."""

    ansible_facts: dict[str, object]
    changed: bool
    failed: bool
    #: A loop's items, each a task result of its own.
    results: list[TaskResult]
    msg: object
    stderr: object
    module_stderr: object


class EventData(TypedDict, total=False):
    """An ansible-runner event's `event_data`: the fields read here."""

    host: str
    task: str
    ignore_errors: bool | None
    res: TaskResult


class RunnerEvent(TypedDict, total=False):
    """An ansible-runner event (runner_on_ok, runner_on_failed...): the fields read here."""

    event: str
    event_data: EventData


#: Called as on_ok(host, task_name, result) for every successful task.
OnOk = Callable[[str, str, TaskResult], None]


class _Events:
    """Collects per-host outcomes from ansible-runner events."""

    def __init__(self, targets: dict[str, Target], on_ok: OnOk | None = None) -> None:
        self.targets = targets
        self.results = {name: HostResult() for name in targets}
        self.on_ok = on_ok

    def __call__(self, event: RunnerEvent) -> bool:
        kind = event.get("event", "")
        data: EventData = event.get("event_data") or {}
        host = data.get("host")
        if host is None or host not in self.results:
            return True
        result = self.results[host]
        res: TaskResult = data.get("res") or {}
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
            msg = _failure_message(res)
            result.outcome = FAILED
            result.message = one_line(f"task '{task}' failed on {host}: {str(msg).strip()}",
                                      600)
        return True  # keep ansible-runner's own artifact handling


def _failure_message(res: TaskResult) -> str:
    """What a failed task said; for a loop, the first failed item's message."""
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            return _failure_message(item)
    return str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "failed")


def one_line(text: str, limit: int = 500) -> str:
    """`text` (perhaps written by a host) as one bounded line for a status reason."""
    flat = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def run_playbook(playbook: str, targets: list[Target],
                 extravars: Mapping[str, object] | None = None,
                 settings: SSHSettings | None = None, timeout: int = 1800,
                 on_ok: OnOk | None = None) -> RunResult:
    """Run `playbook` (a file name under playbooks/ or a path) against `targets`."""
    settings = settings or SSHSettings()
    reasons = {t.address: settings.reach.refusal(t.address) for t in targets}
    refused = {a: HostResult(UNREACHABLE, why) for a, why in reasons.items() if why}
    for target in targets:
        if target.address not in refused and not _ADDRESS.fullmatch(target.address):
            refused[target.address] = HostResult(FAILED, "not a valid host address")
        # Never connect to a host whose key nobody pinned: no run turns host-key
        # checking off (the investigator pins the key before its first run).
        elif target.address not in refused and not target.host_key.strip():
            refused[target.address] = HostResult(HOST_KEY_NOT_PINNED, (
                f"no SSH host key is pinned for {target.address}; refusing to connect "
                "(investigate the host again to pin its key)"))
    targets = [t for t in targets if t.address not in refused]
    if not targets:
        return RunResult(refused, "failed")
    result = _run(playbook, targets, extravars, settings, timeout, on_ok)
    result.hosts.update(refused)
    return result


def _run(playbook: str, targets: list[Target], extravars: Mapping[str, object] | None,
         settings: SSHSettings, timeout: int, on_ok: OnOk | None) -> RunResult:
    by_name = {t.address: t for t in targets}
    private = new_run_dir()
    events = _Events(by_name, on_ok)
    try:
        inventory = _write_inventory(private, targets)
        extra = _write_extravars(private, extravars or {})
        envvars = _environment(private, settings)
        path = Path(playbook) if os.path.isabs(playbook) else PLAYBOOKS / playbook
        runner = ansible_runner.run(
            private_data_dir=str(private),
            ident=uuid.uuid4().hex,
            playbook=str(path),
            # Paths to our own YAML files, never dicts (see the module docstring).
            inventory=str(inventory),
            cmdline=f"-e {shlex.quote('@' + str(extra))}",
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


# -- the files Ansible reads ---------------------------------------------------

class _Unsafe(dict[str, object]):
    """Variables written as one `!unsafe` mapping: Ansible never templates
    anything in it (ansible-core applies the tag to the whole subtree)."""


class _Dumper(yaml.SafeDumper):
    def resolve(self, kind: type[yaml.Node], value: object,
                implicit: tuple[bool, bool] | bool) -> str:
        # Never leave a quoted scalar's tag implicit, so every string is written
        # `!!str "..."`: under `!unsafe`, ansible-core resolves scalars as if plain
        # ("12" would become 12, "true" True, "" None) unless the tag is explicit.
        if kind is yaml.ScalarNode and implicit == (False, True):
            return "!explicit"
        tag: str = super().resolve(kind, value, implicit)
        return tag


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Double-quoted: newlines and control characters are escaped, never raw.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


def _represent_unsafe(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.MappingNode:
    return dumper.represent_mapping("!unsafe", dict(value))


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_Unsafe, _represent_unsafe)
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: An inventory host name: an IP address or a DNS name (no ranges, no patterns).
_ADDRESS = re.compile(r"[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}")  # never "-…": no ssh option


def _plain(value: object) -> object:
    """`value` as plain YAML data (str, int, float, bool, None, lists, dicts)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"cannot hand a {type(value).__name__} to Ansible")


def _variables(values: Mapping[str, object]) -> _Unsafe:
    """Variables (names checked: they are ours) as one `!unsafe` mapping."""
    for name in values:
        if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
            raise ValueError(f"not a variable name: {name!r}")
    return _Unsafe({name: _plain(value) for name, value in values.items()})


def _dump_private(path: Path, data: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.dump(data, handle, Dumper=_Dumper, default_flow_style=False,
                  width=1 << 30, allow_unicode=False, sort_keys=True)


def _write_inventory(private: Path, targets: list[Target]) -> Path:
    """inventory/hosts.yml (every string `!unsafe`), the keys and known_hosts."""
    keys = private / "keys"
    keys.mkdir(mode=0o700)
    known_hosts = private / "known_hosts"
    lines = []
    hosts: dict[str, _Unsafe] = {}
    for n, target in enumerate(targets):
        key_file = keys / f"key{n}"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(target.private_key if target.private_key.endswith("\n")
                         else target.private_key + "\n")
        lines.append(known_hosts_line(target.address, target.port, target.host_key))
        hosts[target.address] = _variables({
            **target.hostvars,
            # Ours last: host variables cannot replace how we connect.
            "ansible_host": target.address,
            "ansible_port": int(target.port),
            "ansible_user": target.user,
            "ansible_ssh_private_key_file": str(key_file),
            "ansible_python_interpreter": "auto_silent",
        })
    known_hosts.write_text("\n".join(lines) + "\n")
    inventory = private / "inventory"
    inventory.mkdir(mode=0o700)
    path = inventory / "hosts.yml"
    _dump_private(path, {"all": {"hosts": hosts}})
    return path


def _write_extravars(private: Path, extravars: Mapping[str, object]) -> Path:
    """vars/extra.yml, passed as `-e @file`: every string `!unsafe`."""
    folder = private / "vars"
    folder.mkdir(mode=0o700)
    path = folder / "extra.yml"
    _dump_private(path, _variables(extravars))
    return path


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
        # Ansible's per-user default on the host (0700 dirs under the remote
        # user's home), never a fixed path in the host's shared /tmp.
        "ANSIBLE_REMOTE_TMP": "~/.ansible/tmp",
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


# -- run dirs ----------------------------------------------------------------------

def _process_stat(pid: int) -> tuple[str, int]:
    """(state, start time in clock ticks since boot) of `pid` from /proc; ("", 0)
    if unknown. The start time tells a reused pid from the process that made a dir."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime)
    except (OSError, ValueError, IndexError):
        return "", 0


def _process_start(pid: int) -> int:
    return _process_stat(pid)[1]


def new_run_dir(parent: str | None = None) -> Path:
    """A fresh 0700 run dir whose name says which process owns it."""
    pid = os.getpid()
    path = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{pid}-{_process_start(pid)}-",
                                 dir=parent))
    os.chmod(path, 0o700)
    return path


def _owner_alive(pid: int, started: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    state, now_started = _process_stat(pid)
    if state in ("Z", "X"):
        return False  # killed, not reaped yet (a container's init may never reap it)
    return not started or now_started in (0, started)


def remove_stale_run_dirs(parent: str | None = None) -> list[str]:
    """Remove the run dirs (with their private keys) of processes that died mid-run.

    Called when a service that runs Ansible starts. Only our own dirs whose owner
    process is gone: several services on one machine each keep theirs."""
    base = Path(parent or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(RUN_DIR_PREFIX):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue  # never follow a symlink, never touch another user's files
        match = _RUN_DIR_NAME.fullmatch(entry.name)
        if match:
            if _owner_alive(int(match[1]), int(match[2])):
                continue
        elif time.time() - info.st_mtime < LEGACY_RUN_DIR_AGE:
            continue  # named before pids were embedded: only once surely finished
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    if removed:
        logger.info("removed %d run dir(s) left by stopped processes", len(removed))
    return removed
