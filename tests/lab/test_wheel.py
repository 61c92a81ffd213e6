"""The wheel works outside the source tree: built from this checkout, installed
into a fresh virtual environment in another directory, it carries the playbooks
(OS profiles, templates, pinned keys) and the example configs, and its runner
runs a playbook against a lab host from there."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.lab import Lab

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Run by the fresh venv's python, in a directory with no source tree near it.
RUN_FACTS = """
import json, sys
import commissaire
from commissaire.ansible import runner

address, key_file, host_key = sys.argv[1:4]
facts = {}
target = runner.Target(address=address, private_key=open(key_file).read(), host_key=host_key)
result = runner.run_playbook(
    "facts.yml", [target],
    on_ok=lambda host, task, res: facts.update((res.get("ansible_facts") or {}).get("commissaire_facts") or {}))
print(json.dumps({"package": commissaire.__file__, "playbooks": str(runner.PLAYBOOKS),
                  "ok": result.ok, "facts": facts}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the fresh venv's python)."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                            "-w", str(work / "dist")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("commissaire-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=300)
    python = work / "venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    yield wheel, python


def test_the_wheel_carries_the_playbooks_and_the_example_configs(
        installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    playbooks = ROOT / "commissaire" / "ansible" / "playbooks"
    in_tree = {str(p.relative_to(ROOT)) for p in playbooks.rglob("*") if p.is_file()}
    assert in_tree and in_tree <= names, sorted(in_tree - names)
    for example in ("allinone-services.json", "commissaire.conf", "investigator.conf",
                    "systemd/commissaire-server.service"):
        assert f"commissaire/conf/{example}" in names


def test_the_installed_runner_runs_a_playbook_on_a_lab_host(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = installed
    with Lab(reboot_time=1.0) as lab:
        (host,) = lab.start_hosts(1)
        run = subprocess.run([str(python), "-c", RUN_FACTS, host.address, lab.private_key_path,
                              host.host_public_key()],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    venv = python.parent.parent
    assert Path(answer["package"]).is_relative_to(venv)  # not this checkout
    assert Path(answer["playbooks"]).is_relative_to(venv)
    assert answer["ok"] is True
    assert answer["facts"]["os"] == "lab" and answer["facts"]["cpus"] >= 1


def test_the_installed_commands_start(installed: tuple[Path, Path]) -> None:
    _, python = installed
    for command in ("commissaire-allinone", "commissaire-server", "commctl"):
        done = subprocess.run([str(python.parent / command), "--help"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (command, done.stderr)
