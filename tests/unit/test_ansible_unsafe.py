"""Untrusted text stays text: every variable our code hands a playbook arrives in
Ansible marked unsafe and comes out literally, with nothing run on the controller.

Two levels: the files runner.py writes (loaded the way ansible-core loads them,
every string must be untrusted), and a real ansible-playbook run of a playbook
that only copies variables (set_fact runs on the controller and opens no
connection), so a `{{ lookup('pipe', 'touch ...') }}` would create its marker
here if anything rendered it. A control run shows the same value in a plain
(trusted) vars file does create the marker: the check can fail.
"""
from __future__ import annotations

import base64
import shlex
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import is_trusted_as_template

from commissaire.ansible import runner
from commissaire.bus.clients import StorageClient
from commissaire.models import ClusterDeploy, Host
from commissaire_service.clusterexec.executor import Executor, Settings
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.investigator.settings import BootstrapSettings

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPARE6ac8xw4DRZIZbTl2vPviLudsVLMZ69Kgp+KFyqJ"


def evil(marker: Path) -> str:
    return f"{{{{ lookup('pipe', 'touch {marker}') }}}}"


# -- every variable our code passes, taken from the code itself ---------------------

class HostileBus:
    """Answers the investigator's and the executor's store calls with `value` in
    every string field the API or the store could have filled."""

    def __init__(self, value: str, network_type: str = "flannel_etcd") -> None:
        self.value = value
        self.network_type = network_type

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None) -> Any:
        params = params or {}
        v = self.value
        if method == "storage.get" and params["kind"] == "Cluster":
            return {"name": params["key"], "network": v, "container_manager": v,
                    "container_runtime": v}
        if method == "storage.get" and params["kind"] == "Network":
            return {"name": v, "type": self.network_type, "options": {
                "address": v, "etcd_server_url": v, "flannel_key": v}}
        if method == "storage.reveal_container_manager":
            return {"name": v, "type": v, "options": {"server_url": v, "token": v}}
        if method == "storage.etcd_endpoint":
            return v
        if method == "storage.get_host":
            return {"address": params["address"], "os": v, "ssh_port": 22,
                    "ssh_host_key": HOST_KEY, "uid": "u1", "cluster": v}
        if method == "storage.reveal_creds":
            return {"address": params["address"], "remote_user": v,
                    "ssh_priv_key": base64.b64encode(b"key").decode()}
        raise AssertionError(f"unexpected call {method}")


def investigator_vars(value: str) -> dict[str, Any]:
    """The host variables the investigator passes, for both network types."""
    found: dict[str, Any] = {}
    for network_type in ("flannel_server", value):  # any other type: flannel_etcd's vars
        svc = InvestigatorService.__new__(InvestigatorService)  # no worker thread
        svc.storage = StorageClient(HostileBus(value, network_type))
        # Admin settings are checked at start-up; here as if they had not been.
        svc.bootstrap = BootstrapSettings(kubernetes_minor=value, release_mirror=value)
        found.update(svc._cluster_vars("127.0.0.1", Host(cluster=value)))
    return found


def executor_vars(value: str) -> tuple[runner.Target, dict[str, Any]]:
    """The target (host variables, user) and extra vars of a deploy's executor."""
    executor = Executor(HostileBus(value), "ClusterDeploy", value, 1, Settings(),
                        threading.Event())
    target = executor._target("127.0.0.1")
    seen: dict[str, Any] = {}
    executor._batcher = types.SimpleNamespace(  # type: ignore[assignment]
        run=lambda playbook, t, extravars: seen.update(extravars))
    executor._run_action(target, ClusterDeploy(version=value, started_at=value))
    return target, seen


#: Every variable our Python hands any playbook, and each inventory variable.
HOST_VARS = sorted({*investigator_vars("x"), *executor_vars("x")[0].hostvars})
EXTRA_VARS = sorted(executor_vars("x")[1])
CONNECTION_VARS = ["ansible_host", "ansible_user", "ansible_ssh_private_key_file",
                   "ansible_python_interpreter"]
#: Variables whose value is not the hostile text: the (validated) address, our own
#: paths and settings, and the operation id, which the executor sanitizes itself.
NOT_HOSTILE = {"ansible_host", "commissaire_bootstrap_ip", "ansible_ssh_private_key_file",
               "ansible_python_interpreter", "commissaire_operation_id"}


def test_the_variable_lists_are_what_the_code_passes() -> None:
    # Sanity: the parametrized tests below really cover the cluster's settings.
    assert {"commissaire_flannel_key", "commissaire_etcd_server_url",
            "commissaire_flanneld_server", "commissaire_kubernetes_api_server_url",
            "commissaire_kubernetes_bearer_token", "commissaire_os",
            "commissaire_network_name", "commissaire_cluster",
            "commissaire_container_runtime", "commissaire_kubernetes_minor",
            "commissaire_release_mirror"} <= set(HOST_VARS)
    assert EXTRA_VARS == ["commissaire_deploy_version", "commissaire_operation_id"]


# -- the files runner.py writes -------------------------------------------------------

class Captured:
    """Stands in for ansible_runner.run: keeps the files a run hands Ansible."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.inventory_text = ""
        self.extra_text = ""
        self.inventory: Any = None
        self.extra: Any = None
        self.private = Path()

    def __call__(self, **kwargs: Any) -> Any:
        self.kwargs = kwargs
        self.private = Path(kwargs["private_data_dir"])
        loader = DataLoader()
        self.inventory_text = Path(kwargs["inventory"]).read_text()
        # Loaded as ansible-core loads inventory and `-e @file`: trusted unless tagged.
        self.inventory = loader.load_from_file(kwargs["inventory"], cache="none",
                                               trusted_as_template=True)
        args = shlex.split(kwargs["cmdline"])
        assert args[0] == "-e" and args[1].startswith("@")
        self.extra_text = Path(args[1][1:]).read_text()
        self.extra = loader.load_from_file(args[1][1:], cache="none",
                                           trusted_as_template=True)
        return types.SimpleNamespace(status="successful")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    capture = Captured()
    monkeypatch.setattr(runner.ansible_runner, "run", capture)
    return capture


def strings(value: Any) -> list[Any]:
    """Every string in `value`, mapping keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def hostile_run(tmp_path: Path, playbook: str = "restart.yml", on_ok: Any = None
                ) -> tuple[runner.RunResult, dict[str, Any], dict[str, Any]]:
    """A run with every variable (and the user) set to a hostile template."""
    value = evil(tmp_path / "pwned")
    hostvars = {**investigator_vars(value), **executor_vars(value)[0].hostvars}
    target = runner.Target(address="127.0.0.1", private_key="key", user=value,
                           host_key=HOST_KEY, hostvars=hostvars)
    extravars = executor_vars(value)[1]
    return (runner.run_playbook(playbook, [target], extravars=extravars, on_ok=on_ok),
            hostvars, extravars)


def test_no_dicts_are_handed_to_ansible_runner(captured: Captured, tmp_path: Path) -> None:
    hostile_run(tmp_path)
    # ansible-runner writes a dict inventory or extravars as trusted JSON.
    assert isinstance(captured.kwargs["inventory"], str)
    assert "extravars" not in captured.kwargs
    assert not (captured.private / "env" / "extravars").exists()
    assert "StrictHostKeyChecking=no" not in captured.inventory_text
    assert "StrictHostKeyChecking=no" not in str(captured.kwargs["envvars"])


def test_every_string_in_the_files_is_unsafe(captured: Captured, tmp_path: Path) -> None:
    hostile_run(tmp_path)
    host = captured.inventory["all"]["hosts"]["127.0.0.1"]
    # Every value, nested keys included (the top-level names are ours).
    values = [s for v in [*host.values(), *captured.extra.values()] for s in strings(v)]
    assert len(values) >= len(HOST_VARS) + len(EXTRA_VARS)
    assert not [s for s in values if is_trusted_as_template(s)]
    assert evil(tmp_path / "pwned") in values


@pytest.mark.parametrize("name", HOST_VARS + CONNECTION_VARS)
def test_each_host_variable_is_written_unsafe(name: str, captured: Captured,
                                              tmp_path: Path) -> None:
    hostile_run(tmp_path)
    value = captured.inventory["all"]["hosts"]["127.0.0.1"][name]
    assert strings(value) and not any(is_trusted_as_template(s) for s in strings(value))
    if name not in NOT_HOSTILE:
        assert value == evil(tmp_path / "pwned")


@pytest.mark.parametrize("name", EXTRA_VARS)
def test_each_extra_variable_is_written_unsafe(name: str, captured: Captured,
                                               tmp_path: Path) -> None:
    hostile_run(tmp_path)
    value = captured.extra[name]
    assert not is_trusted_as_template(value)
    if name == "commissaire_deploy_version":
        assert value == evil(tmp_path / "pwned")


@pytest.mark.parametrize("value", [
    "line\nANOTHER=line", "quote\" and 'single'", "tab\tand\x00nul\x7f", "{% raw %}",
    "ünïcødé \u2028 \U0001F600", "", "12", "true", "~", "- item", "!unsafe x", "&anchor",
])
def test_odd_strings_survive_the_round_trip(value: str, captured: Captured) -> None:
    target = runner.Target("127.0.0.1", "key", user=value, host_key=HOST_KEY,
                           hostvars={"commissaire_cluster": value,
                                     "commissaire_nested": {value: [value, 1, True, None]}})
    runner.run_playbook("restart.yml", [target], extravars={"commissaire_deploy_version": value})
    host = captured.inventory["all"]["hosts"]["127.0.0.1"]
    assert host["ansible_user"] == value and host["commissaire_cluster"] == value
    assert host["commissaire_nested"] == {value: [value, 1, True, None]}
    assert captured.extra["commissaire_deploy_version"] == value
    values = [s for v in [*host.values(), *captured.extra.values()] for s in strings(v)]
    assert not any(is_trusted_as_template(s) for s in values)


def test_host_variables_cannot_replace_how_we_connect(captured: Captured) -> None:
    target = runner.Target("127.0.0.1", "key", host_key=HOST_KEY, hostvars={
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no",
        "ansible_host": "10.0.0.1"})
    runner.run_playbook("restart.yml", [target])
    host = captured.inventory["all"]["hosts"]["127.0.0.1"]
    assert host["ansible_host"] == "127.0.0.1"
    # Not ours, so still written (unsafe) but the SSH settings that matter are in
    # the environment, which host variables cannot reach.
    assert "StrictHostKeyChecking=yes" in captured.kwargs["envvars"]["ANSIBLE_SSH_ARGS"]


def test_a_bad_variable_name_is_refused(captured: Captured) -> None:
    target = runner.Target("127.0.0.1", "key", host_key=HOST_KEY,
                           hostvars={"bad name: {{ x }}": "v"})
    with pytest.raises(ValueError):
        runner.run_playbook("restart.yml", [target])


# -- a real ansible-playbook run: values arrive literally ----------------------------

ECHO_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Echo
      ansible.builtin.set_fact:
        echoed:
{echoes}
    - name: Echo again
      ansible.builtin.set_fact:
        again: "{{{{ echoed }}}}"
"""


@pytest.fixture(scope="module")
def echoed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, dict]:
    """One real run echoing every variable; what came back and the marker dir."""
    tmp_path = tmp_path_factory.mktemp("unsafe")
    names = HOST_VARS + EXTRA_VARS + CONNECTION_VARS
    # Each variable both alone and inside a string: neither may be rendered twice.
    echoes = "\n".join(f'          {n}: "{{{{ {n} }}}}"\n          {n}_in_text: "<{{{{ {n} }}}}>"'
                       for n in names)
    playbook = tmp_path / "echo.yml"
    playbook.write_text(ECHO_PLAYBOOK.format(echoes=echoes))
    got: dict[str, Any] = {}

    def on_ok(host: str, task: str, res: dict[str, Any]) -> None:
        got[task] = res.get("ansible_facts") or {}

    result, hostvars, extravars = hostile_run(tmp_path, str(playbook), on_ok)
    assert result.ok, result
    return got, tmp_path, {**hostvars, **extravars}


@pytest.mark.parametrize("name", HOST_VARS + EXTRA_VARS + ["ansible_user"])
def test_each_variable_arrives_literally_and_runs_nothing(name: str, echoed) -> None:  # type: ignore[no-untyped-def]
    got, tmp_path, passed = echoed
    value = passed[name] if name in NOT_HOSTILE else evil(tmp_path / "pwned")
    assert got["Echo"]["echoed"][name] == value
    assert got["Echo"]["echoed"][f"{name}_in_text"] == f"<{value}>"
    assert got["Echo again"]["again"][name] == value
    assert not (tmp_path / "pwned").exists()


def test_the_check_can_fail_a_trusted_value_is_rendered(tmp_path: Path) -> None:
    """Control: the same value in a plain vars file (as ansible-runner writes
    extravars) runs its lookup on the controller."""
    marker = tmp_path / "rendered"
    (tmp_path / "vars.yml").write_text(f'commissaire_deploy_version: "{evil(marker)}"\n')
    (tmp_path / "inv.yml").write_text("all:\n  hosts:\n    h1: {}\n")
    (tmp_path / "pb.yml").write_text(ECHO_PLAYBOOK.format(
        echoes='          v: "{{ commissaire_deploy_version }}"'))
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
                    "-e", f"@{tmp_path / 'vars.yml'}", str(tmp_path / "pb.yml")],
                   check=True, capture_output=True, timeout=120,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
                        "ANSIBLE_LOCAL_TEMP": str(tmp_path)})
    assert marker.exists()
