"""The playbooks on their own: a host's reported OS maps onto a fixed list of
profiles or the host fails with "unsupported OS"; values from outside never reach
a shell unquoted, a path, or a file on a host unchecked.

The guard tasks of each playbook run for real (ansible-playbook through
runner.run_playbook) with the host tasks cut off: they are controller-only
(set_fact, assert, include_vars), so nothing connects anywhere; the address is
from TEST-NET-1 (192.0.2.0/24), which nothing answers.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from commissaire.ansible import runner

PLAYBOOKS = runner.PLAYBOOKS
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPARE6ac8xw4DRZIZbTl2vPviLudsVLMZ69Kgp+KFyqJ"
NOWHERE = "192.0.2.1"


def load(name: str) -> Any:
    return yaml.safe_load((PLAYBOOKS / name).read_text())


def profile_vars() -> set[str]:
    """Variables defined by our own OS profiles (constants, never from outside)."""
    return {k for f in (PLAYBOOKS / "os").glob("*.yml") for k in yaml.safe_load(f.read_text())}


# -- static audit -----------------------------------------------------------------------

def test_the_profiles_are_one_list() -> None:
    listed = load("vars/profiles.yml")["commissaire_os_profiles"]
    files = sorted(p.stem for p in (PLAYBOOKS / "os").glob("*.yml"))
    assert listed == files == list(runner.OS_PROFILES)


def tasks_of(play: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for key in ("pre_tasks", "tasks", "post_tasks") for t in play.get(key) or []]


def all_tasks() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(PLAYBOOKS.glob("*.yml")):
        for play in yaml.safe_load(path.read_text()):
            found.extend((path.name, t) for t in tasks_of(play))
    return found


EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)


@pytest.mark.parametrize("module", ["ansible.builtin.shell", "ansible.builtin.raw",
                                    "ansible.builtin.command"])
def test_shell_commands_take_only_our_constants_or_quoted_values(module: str) -> None:
    ours = profile_vars()
    checked = 0
    for name, task in all_tasks():
        if module not in task:
            continue
        command = task[module]
        text = command if isinstance(command, str) else str(command.get("cmd", ""))
        loop = [str(i) for i in task.get("loop") or []]
        for expression in EXPRESSION.findall(text):
            expression = expression.strip()
            checked += 1
            if expression.endswith("| quote"):
                continue
            # A constant of our own profiles (the item of a loop over them too).
            names = re.findall(r"\{\{\s*(\w+)\s*\}\}", " ".join(loop)) \
                if expression == "item" else [expression]
            assert names and set(names) <= ours, f"{name}: {task['name']}: {{{{ {expression} }}}}"
        if module == "ansible.builtin.command" and not isinstance(command, str):
            assert "cmd" not in command, "argv only"
    assert checked or module == "ansible.builtin.command"


def test_paths_never_take_the_os_as_given() -> None:
    for path in sorted(PLAYBOOKS.glob("*.yml")):
        text = path.read_text()
        assert "os/{{ commissaire_os }}" not in text, path.name
        for include in re.findall(r"include_vars:\s*\"(.*)\"", text):
            assert "commissaire_os_profiles | select('equalto', commissaire_os) | first" \
                in include, path.name
        for play in yaml.safe_load(text):
            for vars_file in play.get("vars_files") or []:
                assert "{{" not in vars_file, path.name


def test_every_value_written_on_a_host_is_checked_first() -> None:
    """Each variable a template writes is a profile constant, JSON-encoded, or
    checked by bootstrap.yml's pattern checks before any template runs."""
    tasks = tasks_of(load("bootstrap.yml")[0])
    names = [t["name"] for t in tasks]
    first_template = min(i for i, t in enumerate(tasks) if "ansible.builtin.template" in t)
    checks = [t for t in tasks[:first_template] if "ansible.builtin.assert" in t]
    checked = {v for t in checks for v in re.findall(
        r"\b(commissaire_\w+)\b", str(t.get("loop")) + str(t["ansible.builtin.assert"]["that"]))}
    ours = profile_vars()
    for template in sorted((PLAYBOOKS / "templates").glob("*.j2")):
        for expression in EXPRESSION.findall(template.read_text()):
            variable = re.findall(r"\w+", expression)[0]
            assert variable in checked or variable in ours or "| to_json" in expression, \
                f"{template.name}: {{{{{expression}}}}}"
    assert "Check the values written on the host" in names


# -- the guard tasks, run for real -------------------------------------------------------
# One ansible-playbook run per guard, one inventory host (TEST-NET-1 address) per
# case: each case's values are that host's (unsafe) variables.

def guard_playbook(tmp_path: Path, name: str, play: int, upto: str) -> str:
    """Play `play` of playbook `name` up to task `upto` (the controller-only guards)."""
    chosen = load(name)[play]
    tasks = chosen["tasks"]
    end = next(i for i, t in enumerate(tasks) if t["name"] == upto)
    chosen["tasks"] = [*tasks[:end + 1], {"name": "Guards passed", "ansible.builtin.set_fact": {
        "guards_passed": True}}]
    chosen["vars_files"] = [str(PLAYBOOKS / f) for f in chosen.get("vars_files") or []]
    path = tmp_path / f"guard-{name}"
    path.write_text(yaml.safe_dump([chosen], sort_keys=False))
    # include_vars paths are relative to the playbook: give it the os/ dir too.
    if not (tmp_path / "os").exists():
        (tmp_path / "os").symlink_to(PLAYBOOKS / "os")
    return str(path)


Case = tuple[runner.HostResult, dict[str, Any]]


def run_cases(playbook: str, cases: list[dict[str, Any]]) -> list[Case]:
    """Run `playbook` once, one host per case (its variables); each host's outcome
    and the facts it set."""
    facts: dict[str, dict[str, Any]] = {}

    def on_ok(host: str, task: str, res: dict[str, Any]) -> None:
        facts.setdefault(host, {}).update(res.get("ansible_facts") or {})

    targets = [runner.Target(f"192.0.2.{n + 1}", "key", host_key=HOST_KEY, hostvars=hostvars)
               for n, hostvars in enumerate(cases)]
    result = runner.run_playbook(playbook, targets, on_ok=on_ok,
                                 settings=runner.SSHSettings(forks=8))
    return [(result.hosts[t.address], facts.get(t.address, {})) for t in targets]


def evil(marker: Path) -> str:
    return f"{{{{ lookup('pipe', 'touch {marker}') }}}}"


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Created by any hostile lookup that runs; it never may."""
    path = tmp_path_factory.mktemp("marker") / "pwned"
    yield path
    assert not path.exists(), "a value from outside was rendered on the controller"


def hostile(text: str, marker: Path) -> str:
    return text.replace("MARKER", str(marker))


LOOKUP = "{{ lookup('pipe', 'touch MARKER') }}"
HOSTILE_OS = [LOOKUP, "../../../../etc/passwd", "lab\n", "Lab", "lab ", "debian\nID=lab", "",
              "x" * 5000, "__class__", "atomic|lab", "os/../lab", "{% raw %}lab{% endraw %}"]


@pytest.fixture(scope="module")
def os_cases(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> list[Case]:
    playbook = guard_playbook(tmp_path_factory.mktemp("os"), "investigate.yml", 1,
                              "Check the OS is supported")
    return run_cases(playbook, [{"commissaire_facts": {"os": hostile(o, marker), "cpus": 1}}
                                for o in HOSTILE_OS + list(runner.OS_PROFILES)])


@pytest.mark.parametrize("n", range(len(HOSTILE_OS)), ids=[repr(o)[:30] for o in HOSTILE_OS])
def test_a_hostile_reported_os_fails_the_host_as_unsupported(n: int, os_cases: list[Case],
                                                              marker: Path) -> None:
    outcome, facts = os_cases[n]
    assert outcome.outcome == runner.FAILED
    assert "unsupported OS: " in outcome.message
    shown = outcome.message.split("unsupported OS: ", 1)[1].split(";")[0]
    assert re.fullmatch(r"[A-Za-z0-9._?-]{0,64}", shown), shown
    assert facts.get("commissaire_os") == ""
    assert not marker.exists()


@pytest.mark.parametrize("n", range(len(runner.OS_PROFILES)), ids=list(runner.OS_PROFILES))
def test_a_known_os_maps_onto_its_profile(n: int, os_cases: list[Case]) -> None:
    outcome, facts = os_cases[len(HOSTILE_OS) + n]
    assert outcome.outcome == runner.OK, outcome.message
    assert facts["commissaire_os"] == runner.OS_PROFILES[n]
    assert facts["guards_passed"] is True


OP_OK = {"commissaire_os": "lab", "commissaire_operation_id": "deploy-c1-2026-12-03T09_00_00",
         "commissaire_deploy_version": "7.2.1"}
BAD_OS = [LOOKUP, "../os/lab", "", "lab/../../x", "LAB"]
BAD_OPERATION_IDS = ["../../etc/x", "a b", "x;reboot", "{{ 1 }}", "", "-x"]
BAD_VERSIONS = ["1.0; touch /tmp/pwned", "$(touch /tmp/pwned)", "`touch /tmp/pwned`", "1.0\n",
                "1.0 2.0", "--reboot", "-r", "", LOOKUP, "1.0'", '1.0"', "a" * 200]
GOOD_VERSIONS = ["7.2.1", "12", "2016.1", "35.20211215.0", "1.0-rc1", "abc123def", "1:2.3+b1~x"]


def operation_cases(name: str, marker: Path) -> list[dict[str, Any]]:
    cases = [dict(OP_OK)]
    cases += [{**OP_OK, "commissaire_os": hostile(o, marker)} for o in BAD_OS]
    cases += [{**OP_OK, "commissaire_operation_id": i} for i in BAD_OPERATION_IDS]
    if name == "deploy.yml":
        cases += [{**OP_OK, "commissaire_deploy_version": hostile(v, marker)}
                  for v in BAD_VERSIONS]
        cases += [{**OP_OK, "commissaire_deploy_version": v} for v in GOOD_VERSIONS]
    return cases


@pytest.fixture(scope="module")
def operations(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> dict[str, list[Case]]:
    found = {}
    for name in ("restart.yml", "upgrade.yml", "deploy.yml"):
        upto = "Check the host can deploy a tree" if name == "deploy.yml" else \
            "Load the commands of this OS"
        playbook = guard_playbook(tmp_path_factory.mktemp("op"), name, 0, upto)
        found[name] = run_cases(playbook, operation_cases(name, marker))
    return found


OPERATION_PLAYBOOKS = ["restart.yml", "upgrade.yml", "deploy.yml"]


@pytest.mark.parametrize("name", OPERATION_PLAYBOOKS)
def test_operations_load_the_profile_of_a_known_os(name: str, operations) -> None:  # type: ignore[no-untyped-def]
    outcome, facts = operations[name][0]
    assert outcome.outcome == runner.OK, outcome.message
    assert facts["guards_passed"] is True
    assert facts["commissaire_restart_command"] == "systemctl reboot"


@pytest.mark.parametrize("name", OPERATION_PLAYBOOKS)
@pytest.mark.parametrize("n", range(len(BAD_OS)), ids=[repr(o)[:30] for o in BAD_OS])
def test_operations_refuse_an_os_that_is_no_profile(name: str, n: int, operations,  # type: ignore[no-untyped-def]
                                                    marker: Path) -> None:
    outcome, facts = operations[name][1 + n]
    assert outcome.outcome == runner.FAILED
    assert "the OS profile must be one of" in outcome.message
    assert "guards_passed" not in facts and "commissaire_restart_command" not in facts
    assert not marker.exists()


@pytest.mark.parametrize("name", OPERATION_PLAYBOOKS)
@pytest.mark.parametrize("n", range(len(BAD_OPERATION_IDS)), ids=BAD_OPERATION_IDS)
def test_operations_refuse_an_odd_operation_id(name: str, n: int, operations) -> None:  # type: ignore[no-untyped-def]
    outcome, facts = operations[name][1 + len(BAD_OS) + n]
    assert outcome.outcome == runner.FAILED
    assert "guards_passed" not in facts


@pytest.mark.parametrize("n", range(len(BAD_VERSIONS)), ids=[repr(v)[:30] for v in BAD_VERSIONS])
def test_deploy_refuses_a_version_that_is_not_a_plain_version(n: int, operations,  # type: ignore[no-untyped-def]
                                                              marker: Path) -> None:
    outcome, facts = operations["deploy.yml"][1 + len(BAD_OS) + len(BAD_OPERATION_IDS) + n]
    assert outcome.outcome == runner.FAILED
    assert "the version must match" in outcome.message
    assert "guards_passed" not in facts
    assert not marker.exists()


@pytest.mark.parametrize("n", range(len(GOOD_VERSIONS)), ids=GOOD_VERSIONS)
def test_deploy_accepts_plain_versions(n: int, operations) -> None:  # type: ignore[no-untyped-def]
    outcome, facts = operations["deploy.yml"][
        1 + len(BAD_OS) + len(BAD_OPERATION_IDS) + len(BAD_VERSIONS) + n]
    assert outcome.outcome == runner.OK, outcome.message
    assert facts["guards_passed"] is True


BOOTSTRAP_OK = {
    "commissaire_os": "lab", "commissaire_bootstrap_ip": "192.0.2.1",
    "commissaire_network_name": "labnet", "commissaire_network_type": "flannel_etcd",
    "commissaire_etcd_server_url": "http://127.0.0.1:2379,https://[::1]:2379/x?y=z#f",
    "commissaire_flannel_key": "/atomic.io/network", "commissaire_flanneld_server": "",
    "commissaire_container_manager_type": "kubernetes",
    "commissaire_kubernetes_api_server_url": "https://127.0.0.1:6443",
    "commissaire_kubernetes_bearer_token": "abc.DEF-123_~+/=",
}
CHECKED = [
    ("commissaire_flannel_key", "flannel_key"),
    ("commissaire_etcd_server_url", "etcd_server_url"),
    ("commissaire_flanneld_server", "flannel server address"),
    ("commissaire_kubernetes_api_server_url", "container manager server_url"),
    ("commissaire_kubernetes_bearer_token", "container manager token"),
    ("commissaire_network_name", "network name"),
    ("commissaire_network_type", "network type"),
    ("commissaire_container_manager_type", "container manager type"),
    ("commissaire_bootstrap_ip", "host address"),
    ("commissaire_os", "commissaire_os"),
]
BAD_VALUES = ["/x\nFLANNEL_OPTIONS=--evil", 'x"; touch /tmp/pwned; "', "$(touch /tmp/pwned)",
              LOOKUP]
BOOTSTRAP_BAD = [(v, label, bad) for v, label in CHECKED for bad in BAD_VALUES]


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> list[Case]:
    playbook = guard_playbook(tmp_path_factory.mktemp("bootstrap"), "bootstrap.yml", 0,
                              "Load the commands of this OS")
    return run_cases(playbook, [dict(BOOTSTRAP_OK)] + [
        {**BOOTSTRAP_OK, variable: hostile(bad, marker)} for variable, _, bad in BOOTSTRAP_BAD])


def test_bootstrap_checks_pass_ordinary_values(bootstrap: list[Case]) -> None:
    outcome, facts = bootstrap[0]
    assert outcome.outcome == runner.OK, outcome.message
    assert facts["guards_passed"] is True


@pytest.mark.parametrize("n", range(len(BOOTSTRAP_BAD)),
                         ids=[f"{v}-{repr(b)[:20]}" for v, _, b in BOOTSTRAP_BAD])
def test_bootstrap_refuses_values_that_would_change_a_file(n: int, bootstrap: list[Case],
                                                           marker: Path) -> None:
    _, label, bad = BOOTSTRAP_BAD[n]
    outcome, facts = bootstrap[1 + n]
    assert outcome.outcome == runner.FAILED
    assert label in outcome.message and "cannot be written on the host" in outcome.message
    assert "guards_passed" not in facts
    assert hostile(bad, marker) not in outcome.message  # the token above all
    assert not marker.exists()
