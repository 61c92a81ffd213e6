"""A host's facts are its own word: the reported OS maps onto a known profile or
the host fails with "unsupported OS: ..." (sanitized), the raw text is never
stored; numbers and the version are checked before anything is stored."""
from __future__ import annotations

from typing import Any

import pytest

from commissaire.ansible import runner
from commissaire_service.investigator import facts
from commissaire_service.investigator import service as investigator_module
from commissaire_service.investigator.service import InvestigatorService
from tests.unit.test_investigator import add_host
from tests.unit.test_investigator import world as world  # noqa: F401  (the fixture)

GOOD = {"os": "debian", "version": "12", "cpus": 2, "memory": 2048000, "space": 1000}


@pytest.mark.parametrize("reported", [
    "{{ lookup('pipe', 'id > /tmp/x') }}", "../../etc/passwd", "lab\n", "Lab", " lab", "",
    "debian\nID=lab", "x" * 10_000, None, 12, ["lab"], {"lab": 1}, "fedora-asahi-remix"])
def test_an_unknown_os_is_unsupported_and_shown_sanitized(reported: Any) -> None:
    changes, problem = facts.checked({**GOOD, "os": reported})
    assert changes == {}
    assert problem.startswith("unsupported OS: ")
    shown = problem.split("unsupported OS: ", 1)[1].split(" (Commissaire knows", 1)[0]
    assert len(shown) <= facts.SHOWN + 1 and "\n" not in problem
    assert "{" not in shown and "/" not in shown and " " not in shown


@pytest.mark.parametrize("reported", runner.OS_PROFILES)
def test_a_known_os_is_its_profile(reported: str) -> None:
    changes, problem = facts.checked({**GOOD, "os": reported})
    assert problem == "" and changes["os"] == reported


@pytest.mark.parametrize("name, value", [
    ("cpus", -1), ("cpus", 1 << 20), ("cpus", True), ("cpus", "2"), ("cpus", 2.5),
    ("cpus", None), ("memory", -5), ("memory", 1 << 60), ("memory", "lots"),
    ("space", 1 << 70), ("space", [1]), ("version", "1.0\n"), ("version", "1.0; reboot"),
    ("version", "{{ lookup('pipe', 'id') }}"), ("version", 12),
])
def test_invalid_numbers_and_versions_are_refused(name: str, value: Any) -> None:
    changes, problem = facts.checked({**GOOD, name: value})
    assert changes == {} and f"invalid {name}" in problem and "\n" not in problem


def test_valid_facts_are_stored_as_they_are() -> None:
    changes, problem = facts.checked(GOOD)
    assert problem == ""
    assert changes == {"os": "debian", "cpus": 2, "memory": 2048000, "space": 1000}


@pytest.mark.parametrize("reported", ["{{ lookup('pipe', 'id > /tmp/x') }}", "lab\nevil",
                                      "../os/lab"])
def test_a_host_reporting_a_hostile_os_fails_and_its_text_is_not_stored(
        world, monkeypatch, reported: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bus, storage, _ = world

    def run(playbook: str, targets: list[runner.Target], **kw: Any) -> runner.RunResult:
        for t in targets:
            kw["on_ok"](t.address, "Record facts", {"ansible_facts": {"commissaire_facts": {
                **GOOD, "os": reported}}})
        # The playbook refuses the OS too; the investigator's own reason wins.
        return runner.RunResult({t.address: runner.HostResult(
            runner.FAILED, "task 'Check the OS is supported' failed") for t in targets}, "failed")

    monkeypatch.setattr(investigator_module.runner, "run_playbook", run)
    svc = InvestigatorService(bus)
    try:
        add_host(storage, "127.0.1.7")
        svc.run_batch(["127.0.1.7"])
        host = storage.get_host("127.0.1.7")
        assert host["status"] == "failed"
        assert host["status_reason"].startswith("unsupported OS: ")
        assert "\n" not in host["status_reason"] and "{" not in host["status_reason"]
        assert host["os"] == "" and host["cpus"] == 0
    finally:
        svc.stop()
