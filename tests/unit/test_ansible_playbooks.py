"""The playbooks on their own: a host's reported OS maps onto a fixed list of
profiles or the host fails with "unsupported OS"; values from outside never reach
a shell unquoted, a path, or a file on a host unchecked; bootstrap plans what a
host gets (runtime, flannel, kubelet; from a package, a repository or a release
file) before it touches the host, and refuses an unsupported OS release or a
runtime the node cannot use with a reason.

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


def our_vars() -> set[str]:
    """Our constants: the profiles, vars/*.yml and bootstrap.yml's play vars."""
    names = profile_vars()
    for path in (PLAYBOOKS / "vars").glob("*.yml"):
        names |= set(yaml.safe_load(path.read_text()))
    return names | set(load("bootstrap.yml")[0].get("vars") or {})


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
    for path in sorted((PLAYBOOKS / "tasks").glob("*.yml")):
        found.extend((f"tasks/{path.name}", t) for t in yaml.safe_load(path.read_text()))
    return found


def test_no_task_runs_a_shell_with_a_template_in_tasks_files() -> None:
    """The task files of bootstrap run commands as argument lists only."""
    for name, task in all_tasks():
        if name.startswith("tasks/") or name == "bootstrap.yml":
            assert "ansible.builtin.shell" not in task and "ansible.builtin.raw" not in task, \
                f"{name}: {task['name']}"
            command = task.get("ansible.builtin.command")
            if command is not None:
                assert isinstance(command, dict) and "argv" in command and "cmd" not in command, \
                    f"{name}: {task['name']}"


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


#: bootstrap.yml's pattern checks: what they name is checked before it is used.
CHECK_TASKS = ("Check the values written on the host", "Check the container manager token",
               "Check the bootstrap settings are mappings", "Check the package mirrors",
               "Check the release pins", "Check the repository keys")
#: Controller-only modules: nothing before the first other task touches the host.
CONTROLLER_ONLY = ("ansible.builtin.set_fact", "ansible.builtin.assert",
                   "ansible.builtin.include_vars", "ansible.builtin.fail")
#: Host words a plan fact may read: only compared with our own list, so the fact
#: is one of our values (tested below with hostile versions).
COMPARED_ONLY = {"Know the OS release and the node": {"commissaire_facts", "commissaire_os_version"},
                 "Know the configuration to write": {"commissaire_dockerd_found"},
                 "Know what changed on the host": {"commissaire_written",
                                                   "commissaire_kubeconfig_written"}}
VARIABLE = re.compile(r"\b(commissaire_\w+)\b")


def module_of(task: dict[str, Any]) -> str:
    return next(k for k in task if k.startswith("ansible.builtin."))


def bootstrap_audit() -> tuple[set[str], set[str], list[dict[str, Any]]]:
    """(checked, derived, tasks): the names bootstrap.yml's checks cover, and the
    facts it derives only from those and from our constants."""
    tasks = tasks_of(load("bootstrap.yml")[0])
    checked = {v for t in tasks if t["name"] in CHECK_TASKS for v in VARIABLE.findall(
        str(t.get("loop")) + str(t["ansible.builtin.assert"]["that"]))}
    ours, derived = our_vars(), set[str]()
    first_template = min(i for i, t in enumerate(tasks) if "ansible.builtin.template" in t)
    for task in tasks[1:first_template]:  # [0]: the defaults, checked right after
        if "ansible.builtin.set_fact" not in task:
            continue
        loop_var = (task.get("loop_control") or {}).get("loop_var", "item")
        facts = task["ansible.builtin.set_fact"]
        used = set(VARIABLE.findall(str(list(facts.values())) + str(task.get("vars"))))
        unknown = used - ours - checked - derived - {loop_var} - COMPARED_ONLY.get(task["name"], set())
        assert not unknown, f"{task['name']}: {unknown}"
        derived |= set(facts)
    return checked, derived, tasks


def test_bootstrap_decides_everything_before_touching_the_host() -> None:
    tasks = tasks_of(load("bootstrap.yml")[0])
    first_host = next(i for i, t in enumerate(tasks) if module_of(t) not in CONTROLLER_ONLY)
    names = [t["name"] for t in tasks[:first_host]]
    assert names[0] == "Default what the cluster does not set"
    assert set(CHECK_TASKS) < set(names)
    for later in ("Check the node can be set up", "Check the signing keys are at hand",
                  "Resolve where each component comes from"):
        assert later in names, later
    assert all(names.index(check) < names.index("Load the profile of this OS") for check in CHECK_TASKS)


def test_every_value_written_on_a_host_is_checked_first() -> None:
    """Each variable a template writes is one of our constants, JSON-encoded,
    checked by bootstrap.yml's pattern checks, or a fact derived only from those
    before any template runs."""
    checked, derived, tasks = bootstrap_audit()
    allowed = checked | derived | our_vars()
    for template in sorted((PLAYBOOKS / "templates").glob("*.j2")):
        for expression in EXPRESSION.findall(template.read_text()):
            variable = re.findall(r"\w+", expression)[0]
            assert variable in allowed or "| to_json" in expression, \
                f"{template.name}: {{{{{expression}}}}}"
    assert {"commissaire_plan", "commissaire_runtime_spec", "commissaire_os_text"} <= derived
    for name in ("commissaire_package_mirrors", "commissaire_release_mirror", "commissaire_release_pins",
                 "commissaire_repo_keys", "commissaire_kubernetes_minor",
                 "commissaire_container_runtime"):
        assert name in checked, name


def test_the_repository_files_hold_only_the_plan_and_checked_keys() -> None:
    """tasks/repo.yml writes a repository entry of the plan (commissaire_c) and a
    key that is the checked repo-keys setting or a file shipped in playbooks/."""
    tasks = yaml.safe_load((PLAYBOOKS / "tasks/repo.yml").read_text())
    for task in tasks:
        copy = task.get("ansible.builtin.copy")
        if copy is None:
            continue
        for expression in EXPRESSION.findall(str(copy["content"])):
            code = re.sub(r"'[^']*'", "", expression)  # string literals are ours
            assert set(VARIABLE.findall(code)) <= {"commissaire_c", "commissaire_key_path",
                                                   "commissaire_key_text"}, expression
    text = str(next(t for t in tasks if "commissaire_key_text" in str(t.get("ansible.builtin.set_fact"))))
    assert "commissaire_repo_keys[commissaire_c.repo]['key']" in text
    assert "lookup('ansible.builtin.file', commissaire_key_file)" in text


# -- the guard tasks, run for real -------------------------------------------------------
# One ansible-playbook run per guard, one inventory host (TEST-NET-1 address) per
# case: each case's values are that host's (unsafe) variables.

def guard_playbook(tmp_path: Path, name: str, play: int, upto: str, keys: bool = True) -> str:
    """Play `play` of playbook `name` up to task `upto` (the controller-only guards);
    `keys`: with playbooks/files (the shipped signing keys) next to it."""
    chosen = load(name)[play]
    tasks = chosen["tasks"]
    end = next(i for i, t in enumerate(tasks) if t["name"] == upto)
    chosen["tasks"] = [*tasks[:end + 1], {"name": "Guards passed", "ansible.builtin.set_fact": {
        "guards_passed": True}}]
    chosen["vars_files"] = [str(PLAYBOOKS / f) for f in chosen.get("vars_files") or []]
    path = tmp_path / f"guard-{name}"
    path.write_text(yaml.safe_dump([chosen], sort_keys=False))
    # include_vars paths are relative to the playbook: give it the os/ dir too.
    for linked in ("os", "tasks", "templates") + (("files",) if keys else ()):
        if not (tmp_path / linked).exists():
            (tmp_path / linked).symlink_to(PLAYBOOKS / linked)
    return str(path)


Case = tuple[runner.HostResult, dict[str, Any]]


def run_cases(playbook: str, cases: list[dict[str, Any]]) -> list[Case]:
    """Run `playbook` once, one host per case (its variables); each host's outcome
    and the facts it set."""
    facts: dict[str, dict[str, Any]] = {}

    def on_ok(host: str, task: str, res: dict[str, Any]) -> None:
        facts.setdefault(host, {}).update(res.get("ansible_facts") or {})
        for item in res.get("results") or []:  # a set_fact loop: each item's facts
            facts[host].update(item.get("ansible_facts") or {})

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


ARMORED = (PLAYBOOKS / "files/keys/kubernetes.asc").read_text()
K8S_FINGERPRINT = "DE15B14486CD377B9E876E1A234654DA9A296436"
BOOTSTRAP_OK = {
    "commissaire_os": "lab", "commissaire_bootstrap_ip": "192.0.2.1",
    "commissaire_network_name": "labnet", "commissaire_network_type": "flannel_etcd",
    "commissaire_etcd_server_url": "http://127.0.0.1:2379,https://[::1]:2379/x?y=z#f",
    "commissaire_flannel_key": "/atomic.io/network", "commissaire_flanneld_server": "",
    "commissaire_container_manager_type": "kubernetes",
    "commissaire_kubernetes_api_server_url": "https://127.0.0.1:6443",
    "commissaire_kubernetes_bearer_token": "abc.DEF-123_~+/=",
    # the admin config's bootstrap settings and the cluster's runtime
    "commissaire_container_runtime": "cri-o", "commissaire_kubernetes_minor": "1.34",
    "commissaire_release_mirror": "http://127.0.0.1:8080/mirror/",
    "commissaire_package_mirrors": {"kubernetes": "https://[::1]:8443/k8s",
                                    "cri-o": "http://mirror.example.com:80/pkgs.k8s.io/"},
    "commissaire_release_pins": {"flannel": {"version": "v0.28.0",
                                             "sha256": {"amd64": "a" * 64, "arm64": "B" * 64}}},
    "commissaire_repo_keys": {"kubernetes": {"key": ARMORED, "fingerprint": K8S_FINGERPRINT.lower()}},
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
    ("commissaire_container_runtime", "container_runtime"),
    ("commissaire_kubernetes_minor", "kubernetes-minor"),
    ("commissaire_release_mirror", "release-mirror"),
]
BAD_VALUES = ["/x\nFLANNEL_OPTIONS=--evil", 'x"; touch /tmp/pwned; "', "$(touch /tmp/pwned)",
              LOOKUP]
# Each bootstrap setting, with what only it could let through.
SETTING_BAD: list[tuple[str, str, Any]] = [
    *[("commissaire_container_runtime", "container_runtime", v)
      for v in ["podman", "docker --privileged", "cri-o\n", ["docker"], "Docker"]],
    *[("commissaire_kubernetes_minor", "kubernetes-minor", v)
      for v in ["v1.35", "1.350", "2.0", "1.35\n", "1.35/../../x", 1.35]],
    *[("commissaire_release_mirror", "release-mirror", v)
      for v in ["http://mirror.example/?path=x", "http://mirror.example/ x", "ftp://mirror.example/",
                "file:///etc/", "http://user:secret@mirror.example/", "http://mirror.example/#x",
                "http://mirror.example/\nExecStart=/bin/sh", "http://mirror.example/${HOME}"]],
    *[("commissaire_package_mirrors", "package-mirrors", v)
      for v in ["http://mirror.example/", ["http://mirror.example/"],
                {"kubernetes": "http://mirror.example/?q=1"}, {"evil": "http://mirror.example/"},
                {"kubernetes": LOOKUP}, {"kubernetes": ""}, {"cri-o": "http://mirror.example/\n"},
                {"kubernetes": {"url": "http://mirror.example/"}},
                {"docker-ce": "http://mirror.example/ signed-by=/tmp/evil.asc"}]],
    *[("commissaire_release_pins", "release-pins", v)
      for v in ["v0.27.4", {"flannel": "v0.27.4"}, {"evil": {}},
                {"flannel": {"url": "http://mirror.example/flanneld"}},
                {"flannel": {"version": "v0.27.4; reboot"}}, {"flannel": {"version": LOOKUP}},
                {"flannel": {"sha256": {"amd64": "z" * 64}}},
                {"flannel": {"sha256": {"s390x": "0" * 64}}},
                {"flannel": {"sha256": {"amd64": "0" * 63}}},
                {"flannel": {"version": "v0.28.0"}}, {"flannel": {"sha256": "0" * 64}}]],
    *[("commissaire_repo_keys", "repo-keys", v)
      for v in [{"kubernetes": {"key": "not a key", "fingerprint": K8S_FINGERPRINT}},
                {"kubernetes": {"key": ARMORED, "fingerprint": K8S_FINGERPRINT[:39]}},
                {"kubernetes": {"key": ARMORED}}, {"kubernetes": ARMORED},
                {"evil": {"key": ARMORED, "fingerprint": K8S_FINGERPRINT}},
                {"kubernetes": {"key": ARMORED.replace("-----END", "$(touch /tmp/pwned)\n-----END"),
                                "fingerprint": K8S_FINGERPRINT}},
                {"kubernetes": {"key": LOOKUP, "fingerprint": K8S_FINGERPRINT}},
                {"kubernetes": {"key": ARMORED, "fingerprint": K8S_FINGERPRINT,
                                "url": "http://mirror.example/key"}},
                {"kubernetes": {"key": ARMORED + "[Service]\nExecStart=/bin/sh\n",
                                "fingerprint": K8S_FINGERPRINT}}]],
]
BOOTSTRAP_BAD = [(v, label, bad) for v, label in CHECKED for bad in BAD_VALUES] + SETTING_BAD


def hostile_value(value: Any, marker: Path) -> Any:
    """`value` with MARKER replaced everywhere inside it."""
    if isinstance(value, str):
        return hostile(value, marker)
    if isinstance(value, dict):
        return {k: hostile_value(v, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile_value(v, marker) for v in value]
    return value


def leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in leaves(v)]
    return [value] if isinstance(value, str) else []


#: The last controller-only task of bootstrap.yml: the plan is complete there.
PLANNED = "Check the signing keys are at hand"


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> list[Case]:
    playbook = guard_playbook(tmp_path_factory.mktemp("bootstrap"), "bootstrap.yml", 0, PLANNED)
    return run_cases(playbook, [dict(BOOTSTRAP_OK)] + [
        {**BOOTSTRAP_OK, variable: hostile_value(bad, marker)}
        for variable, _, bad in BOOTSTRAP_BAD])


def test_bootstrap_checks_pass_ordinary_values(bootstrap: list[Case]) -> None:
    outcome, facts = bootstrap[0]
    assert outcome.outcome == runner.OK, outcome.message
    assert facts["guards_passed"] is True
    assert facts["commissaire_runtime"] == "cri-o"
    assert [c["name"] for c in facts["commissaire_plan"]] == ["cri-o", "flannel", "kubelet"]


@pytest.mark.parametrize("n", range(len(BOOTSTRAP_BAD)),
                         ids=[f"{v}-{repr(b)[:20]}" for v, _, b in BOOTSTRAP_BAD])
def test_bootstrap_refuses_values_that_would_change_a_file(n: int, bootstrap: list[Case],
                                                           marker: Path) -> None:
    _, label, bad = BOOTSTRAP_BAD[n]
    outcome, facts = bootstrap[1 + n]
    assert outcome.outcome == runner.FAILED  # never unreachable: no host was contacted
    assert outcome.message.startswith("task 'Check the ")
    assert label in outcome.message
    assert "cannot be written on the host" in outcome.message or "cannot be used" in outcome.message
    assert "guards_passed" not in facts and "commissaire_plan" not in facts
    for text in leaves(hostile_value(bad, marker)):
        if len(text) >= 8:
            assert text not in outcome.message  # the token above all
    assert not marker.exists()


# -- what bootstrap plans for each OS, before it touches the host ---------------------------

def plan_case(os: str, version: str = "", manager: str = "", **more: Any) -> dict[str, Any]:
    case = {"commissaire_os": os, "commissaire_os_version": version,
            "commissaire_bootstrap_ip": "192.0.2.1", "commissaire_network_name": "net",
            "commissaire_etcd_server_url": "http://127.0.0.1:2379", **more}
    if manager:
        case.update({"commissaire_container_manager_type": manager,
                     "commissaire_kubernetes_api_server_url": "https://192.0.2.9:6443",
                     "commissaire_kubernetes_bearer_token": "token"})
    return case


MIRROR = "http://127.0.0.1:8080"
PLAN_CASES: dict[str, dict[str, Any]] = {
    "debian-12": plan_case("debian", "12"),
    "debian-13-kubernetes": plan_case("debian", "13", "kubernetes"),
    "debian-14": plan_case("debian", "14"),
    "debian-unknown": plan_case("debian", ""),
    "debian-hostile-version": plan_case("debian", "12$(reboot)\nID=lab"),
    "debian-12-containerd-1.35": plan_case("debian", "12", "kubernetes",
                                           commissaire_container_runtime="containerd",
                                           commissaire_kubernetes_minor="1.35"),
    "debian-12-containerd-1.36": plan_case("debian", "12", "kubernetes",
                                           commissaire_container_runtime="containerd",
                                           commissaire_kubernetes_minor="1.36"),
    "ubuntu-24.04-containerd-1.36": plan_case("ubuntu", "24.04", "kubernetes",
                                              commissaire_container_runtime="containerd",
                                              commissaire_kubernetes_minor="1.36"),
    "ubuntu-22.10": plan_case("ubuntu", "22.10"),
    "kubernetes-on-docker": plan_case("debian", "12", "kubernetes",
                                      commissaire_container_runtime="docker"),
    "openshift-on-containerd": plan_case("debian", "12", "openshift",
                                         commissaire_container_runtime="containerd"),
    "trivial-manager": plan_case("debian", "12", "trivial"),
    "flannel-server": plan_case("debian", "12", commissaire_network_type="flannel_server",
                                commissaire_flanneld_server="127.0.0.1:8080"),
    "rhel-9.4": plan_case("rhel", "9.4"),
    "rhel-9.4-kubernetes": plan_case("rhel", "9.4", "kubernetes"),
    "centos-9": plan_case("centos", "9"),
    "fedora-43-kubernetes-1.34": plan_case("fedora", "43", "kubernetes",
                                           commissaire_kubernetes_minor="1.34"),
    "atomic-43": plan_case("atomic", "43.20261110.3.1"),
    "lab-kubernetes": plan_case("lab", "1.0", "kubernetes"),
    "mirrors": plan_case("debian", "12", "kubernetes",
                         commissaire_package_mirrors={"kubernetes": MIRROR + "/k8s",
                                                      "cri-o": MIRROR + "/k8s//"},
                         commissaire_release_mirror=MIRROR + "/releases"),
    "another-flannel": plan_case("ubuntu", "22.04", commissaire_release_pins={
        "flannel": {"version": "v0.28.0", "sha256": {"amd64": "A" * 64}}}),
    "one-more-checksum": plan_case("ubuntu", "22.04", commissaire_release_pins={
        "flannel": {"sha256": {"arm64": "b" * 64}}}),
    "repo-keys": plan_case("debian", "12", "kubernetes", commissaire_repo_keys={
        "kubernetes": {"key": ARMORED, "fingerprint": K8S_FINGERPRINT.lower()}}),
}


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    playbook = guard_playbook(tmp_path_factory.mktemp("plan"), "bootstrap.yml", 0, PLANNED)
    return dict(zip(PLAN_CASES, run_cases(playbook, list(PLAN_CASES.values())), strict=True))


def planned(plans: dict[str, Case], case: str) -> dict[str, dict[str, Any]]:
    outcome, facts = plans[case]
    assert outcome.outcome == runner.OK, outcome.message
    assert facts["guards_passed"] is True
    return {c["name"]: c for c in facts["commissaire_plan"]}


def refused(plans: dict[str, Case], case: str) -> str:
    outcome, facts = plans[case]
    assert outcome.outcome == runner.FAILED  # before any connection: never unreachable
    assert "guards_passed" not in facts
    return outcome.message.split(": ", 1)[1]


FLANNEL = "flannel-io/flannel/releases/download/v0.27.4/flanneld-{arch}"


def test_debian_12_gets_docker_from_its_archive_and_flannel_as_a_release(plans) -> None:  # type: ignore[no-untyped-def]
    plan = planned(plans, "debian-12")
    assert list(plan) == ["docker", "flannel"]
    assert plan["docker"]["source"] == "package" and plan["docker"]["packages"] == ["docker.io"]
    assert plan["flannel"]["source"] == "release"
    assert plan["flannel"]["release_url"] == "https://github.com/" + FLANNEL
    assert plan["flannel"]["release_sha256"]["amd64"] == \
        "fc1233aac3ad2707d14c9ae42016b5402753f755f0d07cc5c41dc4190e95d299"
    assert plans["debian-12"][1]["commissaire_os_text"] == "debian 12 (bookworm)"


def test_a_kubernetes_node_gets_cri_o_and_the_kubelet_from_pkgs_k8s_io(plans) -> None:  # type: ignore[no-untyped-def]
    plan = planned(plans, "debian-13-kubernetes")
    assert list(plan) == ["cri-o", "flannel", "kubelet"]
    assert "kube-proxy" not in plan  # a DaemonSet in the cluster
    kubelet = plan["kubelet"]
    assert kubelet["repo_url"] == "https://pkgs.k8s.io/core:/stable:/v1.35/deb/"
    assert kubelet["repo_suite"] == "/" and kubelet["repo_components"] == []
    assert kubelet["repo_fingerprint"] == K8S_FINGERPRINT and kubelet["hold"] is True
    assert plan["cri-o"]["repo_url"] == "https://pkgs.k8s.io/addons:/cri-o:/stable:/v1.35/deb/"


@pytest.mark.parametrize("case, reason", [
    ("debian-14", "debian 14 is not supported by this profile; supported: 12 (bookworm), 13 (trixie)"),
    ("debian-unknown", "debian (version unknown) is not supported by this profile; "
                       "supported: 12 (bookworm), 13 (trixie)"),
    ("ubuntu-22.10", "ubuntu 22.10 is not supported by this profile; "
                     "supported: 22.04 (jammy), 24.04 (noble)"),
])
def test_an_unknown_release_of_a_known_os_is_refused_with_the_list(plans, case: str,  # type: ignore[no-untyped-def]
                                                                   reason: str) -> None:
    assert refused(plans, case) == reason


def test_a_hostile_version_is_shown_defused(plans) -> None:  # type: ignore[no-untyped-def]
    reason = refused(plans, "debian-hostile-version")
    assert reason.startswith("debian 12??reboot??ID?lab is not supported")
    assert "$(" not in reason and "\n" not in reason


def test_containerd_1_x_is_refused_past_kubernetes_1_35(plans) -> None:  # type: ignore[no-untyped-def]
    assert planned(plans, "debian-12-containerd-1.35")["containerd"]["packages"] == ["containerd"]
    assert refused(plans, "debian-12-containerd-1.36") == (
        "containerd: debian 12 (bookworm) packages a containerd that Kubernetes supports up to "
        "1.35 only, and this cluster's Kubernetes minor is 1.36; set the cluster's "
        "container_runtime to cri-o, or kubernetes-minor to 1.35 or lower")
    assert planned(plans, "ubuntu-24.04-containerd-1.36")["containerd"]["source"] == "package"


def test_the_runtime_must_suit_the_node(plans) -> None:  # type: ignore[no-untyped-def]
    assert "Kubernetes removed dockershim in 1.24" in refused(plans, "kubernetes-on-docker")
    assert refused(plans, "openshift-on-containerd").startswith(
        "containerd: OpenShift nodes run CRI-O only")
    assert list(planned(plans, "trivial-manager")) == ["docker", "flannel"]


def test_a_flannel_server_network_is_refused(plans) -> None:  # type: ignore[no-untyped-def]
    assert "flannel removed in v0.8.0" in refused(plans, "flannel-server")


def test_rhel_and_centos_get_docker_and_kubernetes_from_upstream_repositories(plans) -> None:  # type: ignore[no-untyped-def]
    docker = planned(plans, "rhel-9.4")["docker"]
    assert docker["source"] == "repo"
    assert docker["repo_url"] == "https://download.docker.com/linux/rhel/9/$basearch/stable/"
    assert docker["repo_fingerprint"] == "060A61C51B558A7F742B77AAC52FEB6B621E9F35"
    assert plans["rhel-9.4"][1]["commissaire_os_text"] == "rhel 9"
    assert planned(plans, "centos-9")["docker"]["repo_url"] == \
        "https://download.docker.com/linux/centos/9/$basearch/stable/"
    kube = planned(plans, "rhel-9.4-kubernetes")
    assert kube["kubelet"]["repo_url"] == "https://pkgs.k8s.io/core:/stable:/v1.35/rpm/"
    assert "kubelet" in kube["kubelet"]["repo_exclude"]  # held back from dnf upgrade


def test_fedora_packages_the_kubelet_and_cri_o_per_minor(plans) -> None:  # type: ignore[no-untyped-def]
    plan = planned(plans, "fedora-43-kubernetes-1.34")
    assert plan["kubelet"]["source"] == "package" and plan["kubelet"]["packages"] == ["kubernetes1.34"]
    assert plan["cri-o"]["packages"] == ["cri-o1.34"] and plan["cri-o"]["versioned"] is True


def test_an_ostree_host_uses_the_docker_of_its_tree(plans) -> None:  # type: ignore[no-untyped-def]
    assert planned(plans, "atomic-43")["docker"]["source"] == "tree"
    assert plans["atomic-43"][1]["commissaire_os_text"] == "atomic 43"


def test_the_lab_installs_everything_with_its_stand_ins(plans) -> None:  # type: ignore[no-untyped-def]
    plan = planned(plans, "lab-kubernetes")
    assert {c["source"] for c in plan.values()} == {"package"}
    assert [c["packages"] for c in plan.values()] == [["cri-o"], ["flannel"], ["kubelet"]]


def test_mirrors_replace_the_upstream_base_and_keep_the_path(plans) -> None:  # type: ignore[no-untyped-def]
    plan = planned(plans, "mirrors")
    assert plan["kubelet"]["repo_url"] == MIRROR + "/k8s/core:/stable:/v1.35/deb/"
    assert plan["cri-o"]["repo_url"] == MIRROR + "/k8s/addons:/cri-o:/stable:/v1.35/deb/"
    assert plan["kubelet"]["repo_fingerprint"] == K8S_FINGERPRINT  # the pinned key still verifies
    assert plan["flannel"]["release_url"] == MIRROR + "/releases/" + FLANNEL


def test_release_pins_replace_the_version_and_its_checksums(plans) -> None:  # type: ignore[no-untyped-def]
    flannel = planned(plans, "another-flannel")["flannel"]
    assert flannel["release_version"] == "v0.28.0"
    assert flannel["release_url"].endswith("/v0.28.0/flanneld-{arch}")
    assert flannel["release_sha256"] == {"amd64": "A" * 64}  # none of v0.27.4's
    same = planned(plans, "one-more-checksum")["flannel"]
    assert same["release_version"] == "v0.27.4"
    assert same["release_sha256"] == {
        "amd64": "fc1233aac3ad2707d14c9ae42016b5402753f755f0d07cc5c41dc4190e95d299",
        "arm64": "b" * 64}


def test_repo_keys_replace_the_shipped_key(plans) -> None:  # type: ignore[no-untyped-def]
    kubelet = planned(plans, "repo-keys")["kubelet"]
    assert kubelet["repo_key_override"] is True and kubelet["repo_fingerprint"] == K8S_FINGERPRINT
    assert planned(plans, "repo-keys")["cri-o"]["repo_key_override"] is False


def test_a_missing_key_file_fails_with_the_file_named(tmp_path: Path) -> None:
    playbook = guard_playbook(tmp_path, "bootstrap.yml", 0, PLANNED, keys=False)
    ((outcome, facts),) = run_cases(playbook, [PLAN_CASES["debian-13-kubernetes"]])
    assert outcome.outcome == runner.FAILED
    assert outcome.message.endswith(
        "cri-o: the signing key of repository cri-o is missing (playbooks/files/keys/kubernetes.asc, "
        f"fingerprint {K8S_FINGERPRINT}); restore that file, or set repo-keys.cri-o")
