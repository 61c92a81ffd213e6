"""What a run leaves on the controller and on hosts: no run without a pinned
host key, a private remote temporary directory, private keys only for the
length of a run, and run dirs of killed processes removed when a service starts."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import pytest

from commissaire.ansible import runner
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.investigator.service import InvestigatorService
from tests.unit.fakes import DirectBus

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPARE6ac8xw4DRZIZbTl2vPviLudsVLMZ69Kgp+KFyqJ"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----\n"


class Spy:
    """Stands in for ansible_runner.run; records what each run had on disk."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        private = Path(kwargs["private_data_dir"])
        keys = sorted((private / "keys").iterdir())
        self.calls.append({
            **kwargs, "private": private,
            "private_mode": stat.S_IMODE(private.stat().st_mode),
            "key_modes": [stat.S_IMODE(k.stat().st_mode) for k in keys],
            "keys": [k.read_text() for k in keys],
            "known_hosts": (private / "known_hosts").read_text()})
        if self.fail:
            raise RuntimeError("ansible-runner blew up")
        return types.SimpleNamespace(status="successful")


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy()
    monkeypatch.setattr(runner.ansible_runner, "run", spy)
    return spy


# -- no run without a pinned host key --------------------------------------------------

def test_a_host_without_a_pinned_key_is_refused_without_running(spy: Spy) -> None:
    result = runner.run_playbook("restart.yml", [
        runner.Target("127.0.0.1", KEY, host_key=""),
        runner.Target("127.0.0.2", KEY, host_key="  ")])
    assert spy.calls == []
    for address in ("127.0.0.1", "127.0.0.2"):
        outcome = result.hosts[address]
        assert outcome.outcome == runner.HOST_KEY_NOT_PINNED
        assert "no SSH host key is pinned" in outcome.message


def test_pinned_and_unpinned_hosts_in_one_batch(spy: Spy) -> None:
    result = runner.run_playbook("restart.yml", [
        runner.Target("127.0.0.1", KEY, host_key=HOST_KEY),
        runner.Target("127.0.0.2", KEY, host_key="")])
    (call,) = spy.calls
    inventory = Path(call["inventory"])  # removed by now; what was run is in the spy
    assert inventory.name == "hosts.yml"
    assert call["known_hosts"] == f"127.0.0.1 {HOST_KEY}\n"
    assert result.hosts["127.0.0.2"].outcome == runner.HOST_KEY_NOT_PINNED
    assert result.hosts["127.0.0.1"].outcome == runner.OK


def test_host_key_checking_is_never_turned_off(spy: Spy) -> None:
    runner.run_playbook("restart.yml", [runner.Target("127.0.0.1", KEY, host_key=HOST_KEY,
                                                      port=2222)])
    (call,) = spy.calls
    env = call["envvars"]
    assert "StrictHostKeyChecking=yes" in env["ANSIBLE_SSH_ARGS"]
    assert "StrictHostKeyChecking=no" not in str(call)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert call["known_hosts"] == f"[127.0.0.1]:2222 {HOST_KEY}\n"


@pytest.mark.parametrize("address", ["127.0.0.[1:9]", "host name", "{{ x }}", "a\nb", "",
                                     "-oProxyCommand=x"])
def test_an_address_that_is_no_host_name_is_refused(address: str, spy: Spy) -> None:
    result = runner.run_playbook("restart.yml", [runner.Target(address, KEY, host_key=HOST_KEY)])
    assert spy.calls == []
    assert result.hosts[address].outcome == runner.FAILED


# -- the remote temporary directory ----------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "fe80::1", "host.example.com",
                                     "host.example.com."])
def test_ip_addresses_and_dns_names_are_host_names(address: str, spy: Spy) -> None:
    result = runner.run_playbook("restart.yml", [runner.Target(address, KEY, host_key=HOST_KEY)])
    assert len(spy.calls) == 1 and result.hosts[address].outcome == runner.OK


def test_the_remote_temporary_directory_is_ansibles_per_user_default(spy: Spy) -> None:
    runner.run_playbook("restart.yml", [runner.Target("127.0.0.1", KEY, host_key=HOST_KEY)])
    remote_tmp = spy.calls[0]["envvars"]["ANSIBLE_REMOTE_TMP"]
    # Not a fixed path in the host's shared /tmp that a local user could create first.
    assert remote_tmp == "~/.ansible/tmp"


# -- private keys only for the length of a run ---------------------------------------

@pytest.mark.parametrize("fail", [False, True])
def test_keys_are_private_and_gone_after_the_run(fail: bool, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    spy = Spy(fail=fail)
    monkeypatch.setattr(runner.ansible_runner, "run", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    targets = [runner.Target(f"127.0.0.{i}", KEY, host_key=HOST_KEY) for i in (1, 2)]
    if fail:
        with pytest.raises(RuntimeError):
            runner.run_playbook("restart.yml", targets)
    else:
        runner.run_playbook("restart.yml", targets)
    (call,) = spy.calls
    assert call["private_mode"] == 0o700 and call["key_modes"] == [0o600, 0o600]
    assert call["keys"] == [KEY, KEY]
    assert call["private"].parent == tmp_path
    assert call["private"].name.startswith(f"commissaire-run-{os.getpid()}-")
    assert not call["private"].exists()
    assert list(tmp_path.iterdir()) == []


# -- run dirs of killed processes --------------------------------------------------------

def make_dir(parent: Path, name: str) -> Path:
    path = parent / name
    (path / "keys").mkdir(parents=True)
    (path / "keys" / "key0").write_text(KEY)
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_run_dirs_of_dead_processes_are_removed(tmp_path: Path) -> None:
    me, started = os.getpid(), runner._process_start(os.getpid())
    mine = runner.new_run_dir(str(tmp_path))
    alive = make_dir(tmp_path, f"commissaire-run-{me}-{started}-abc")
    dead = make_dir(tmp_path, f"commissaire-run-{dead_pid()}-123-abc")
    # Our pid, but a process that started at another time: the pid was reused.
    reused = make_dir(tmp_path, f"commissaire-run-{me}-{started + 1}-abc")
    legacy_new = make_dir(tmp_path, "commissaire-run-k2j4h5g6")
    legacy_old = make_dir(tmp_path, "commissaire-run-a1b2c3d4")
    old = time.time() - runner.LEGACY_RUN_DIR_AGE - 60
    os.utime(legacy_old, (old, old))
    elsewhere = make_dir(tmp_path, "elsewhere")
    link = tmp_path / f"commissaire-run-{dead_pid()}-1-link"
    link.symlink_to(elsewhere)
    other = make_dir(tmp_path, "unrelated-run-1-1-x")

    removed = runner.remove_stale_run_dirs(str(tmp_path))

    assert sorted(removed) == sorted(str(p) for p in (dead, reused, legacy_old))
    for kept in (mine, alive, legacy_new, elsewhere, other):
        assert kept.exists(), kept
    assert link.is_symlink() and (elsewhere / "keys" / "key0").exists()  # never followed


def test_the_dir_of_a_killed_process_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    script = ("import sys, time; from commissaire.ansible import runner; "
              "d = runner.new_run_dir(sys.argv[1]); (d / 'key').write_text('secret'); "
              "print(d, flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(Path(runner.__file__).parents[2])}
    killed = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=env)
    living = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert killed.stdout is not None and living.stdout is not None
        killed_dir = Path(killed.stdout.readline().strip())
        living_dir = Path(living.stdout.readline().strip())
        os.kill(killed.pid, signal.SIGKILL)  # no finally runs: the dir stays behind
        killed.wait()
        assert (killed_dir / "key").exists()
        assert runner.remove_stale_run_dirs(str(tmp_path)) == [str(killed_dir)]
        assert not killed_dir.exists() and (living_dir / "key").exists()
    finally:
        for proc in (killed, living):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.mark.parametrize("service", ["investigator", "clusterexec"])
def test_services_remove_stale_run_dirs_when_they_start(service: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = make_dir(tmp_path, f"commissaire-run-{dead_pid()}-42-xyz")
    if service == "investigator":
        svc: Any = InvestigatorService(DirectBus())
    else:
        svc = ClusterExecService(DirectBus(), start=False)
    try:
        assert not stale.exists()
    finally:
        svc.stop()


def test_a_killed_owner_not_yet_reaped_counts_as_dead(tmp_path: Path) -> None:
    """A zombie still answers kill(pid, 0); a container's init may never reap it."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while runner._process_stat(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner._process_stat(child.pid)[0] == "Z"
        stale = make_dir(tmp_path, f"commissaire-run-{child.pid}-"
                                   f"{runner._process_start(child.pid)}-zzz")
        assert runner.remove_stale_run_dirs(str(tmp_path)) == [str(stale)]
    finally:
        child.wait()
