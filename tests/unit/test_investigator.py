"""The investigator's decisions, with the storage service behind a direct bus and
Ansible replaced by a recorder (the real runs are in tests/lab)."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from commissaire.ansible import runner
from commissaire_service.investigator import service as investigator_module
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox

ED25519 = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDwEROmnPMcOA0WSGW05drz74i7nbFSzGevSoKfihcqiQAAAJBY6iFoWOoh
aAAAAAtzc2gtZWQyNTUxOQAAACDwEROmnPMcOA0WSGW05drz74i7nbFSzGevSoKfihcqiQ
AAAEDqJxtI4oumY++opgsXlxFIIfKDPB23o9orxABYOyuxm/ARE6ac8xw4DRZIZbTl2vPv
iLudsVLMZ69Kgp+KFyqJAAAAC3Rlc3RAc2FtcGxlAQI=
-----END OPENSSH PRIVATE KEY-----
"""
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPARE6ac8xw4DRZIZbTl2vPviLudsVLMZ69Kgp+KFyqJ"


class Recorder:
    """Stands in for commissaire.ansible.runner.run_playbook."""

    def __init__(self, outcome: str = runner.OK, message: str = "",
                 changes: dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        self.message = message
        self.changes = changes  # what the playbook's last step records, if anything
        self.runs: list[tuple[str, list[runner.Target]]] = []

    def __call__(self, playbook: str, targets: list[runner.Target], **kw: Any) -> runner.RunResult:
        self.runs.append((playbook, targets))
        for t in targets:
            if self.outcome == runner.OK:
                kw["on_ok"](t.address, "Record facts", {"ansible_facts": {"commissaire_facts": {
                    "os": "debian", "cpus": 2, "memory": 2048000, "space": 1000}}})
                if self.changes is not None:
                    kw["on_ok"](t.address, "Record what the bootstrap changed",
                                {"ansible_facts": {"commissaire_bootstrap_changes": self.changes}})
        return runner.RunResult({t.address: runner.HostResult(self.outcome, self.message)
                                 for t in targets}, "successful")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[DirectBus, StorageService, Recorder]:
    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(DictStore()), ReversibleBox()),
                             notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    recorder = Recorder()
    monkeypatch.setattr(investigator_module.runner, "run_playbook", recorder)

    async def fake_fetch(address: str, port: int = 22, timeout: float = 10.0,
                         reach: Any = None) -> str:
        return HOST_KEY

    monkeypatch.setattr(investigator_module, "fetch_host_key", fake_fetch)
    return bus, storage, recorder


def add_host(storage: StorageService, address: str, key: str = ED25519, cluster: str = "") -> None:
    storage.create_host({"address": address}, {"address": address, "remote_user": "root",
                                               "ssh_priv_key": base64.b64encode(key.encode()).decode()},
                        cluster)


def test_hosts_that_arrive_together_share_one_run(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, recorder = world
    svc = InvestigatorService(bus, batch_window=0.01)
    try:
        for i in range(1, 4):
            add_host(storage, f"127.0.1.{i}")
        svc.run_batch(["127.0.1.1", "127.0.1.2", "127.0.1.3"])
        assert len(recorder.runs) == 1 and len(recorder.runs[0][1]) == 3
        host = storage.get_host("127.0.1.2")
        assert host["status"] == "disassociated"
        assert (host["os"], host["cpus"], host["memory"]) == ("debian", 2, 2048000)
        assert host["ssh_host_key"] == HOST_KEY
        assert host["host_key_fingerprint"].startswith("SHA256:")
    finally:
        svc.stop()


def test_an_invalid_key_fails_with_a_reason(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, recorder = world
    svc = InvestigatorService(bus)
    try:
        add_host(storage, "127.0.1.9", key="test\n")
        svc.run_batch(["127.0.1.9"])
        host = storage.get_host("127.0.1.9")
        assert host["status"] == "failed"
        assert "not a valid" in host["status_reason"]
        assert recorder.runs == []
    finally:
        svc.stop()


def test_ansible_outcome_becomes_the_reason(world) -> None:  # type: ignore[no-untyped-def]
    bus, storage, recorder = world
    recorder.outcome, recorder.message = runner.AUTH_FAILED, "SSH authentication as root failed"
    svc = InvestigatorService(bus)
    try:
        add_host(storage, "127.0.1.5")
        svc.run_batch(["127.0.1.5"])
        host = storage.get_host("127.0.1.5")
        assert host["status"] == "failed"
        assert host["status_reason"] == "SSH authentication as root failed"
    finally:
        svc.stop()


def test_a_changed_host_key_is_refused(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bus, storage, recorder = world
    svc = InvestigatorService(bus)
    try:
        add_host(storage, "127.0.1.6")
        storage.update_host("127.0.1.6", {"ssh_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"
                                                          "xvbmdlci1rZXktdGhhbi10aGUtcmVhbC1vbmU"})
        svc.run_batch(["127.0.1.6"])
        host = storage.get_host("127.0.1.6")
        assert host["status"] == "failed" and "changed since it was pinned" in host["status_reason"]
        assert recorder.runs == []
    finally:
        svc.stop()


@pytest.mark.parametrize("message, outcome", [
    ("Failed to connect to the host via ssh: root@1.2.3.4: Permission denied (publickey).",
     runner.AUTH_FAILED),
    ("Failed to connect to the host via ssh: @@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!",
     runner.HOST_KEY_MISMATCH),
    ("Failed to connect to the host via ssh: Host key verification failed.",
     runner.HOST_KEY_MISMATCH),
    ("Failed to connect to the host via ssh: ssh: connect to host 1.2.3.4 port 22: "
     "Connection refused", runner.UNREACHABLE),
])
def test_unreachable_messages_are_told_apart(message: str, outcome: str) -> None:
    got, text = runner.classify_unreachable(message, runner.Target("1.2.3.4", "k"))
    assert got == outcome
    assert "1.2.3.4" in text


def test_the_log_says_what_a_bootstrap_changed(world, caplog) -> None:  # type: ignore[no-untyped-def]
    bus, storage, recorder = world
    svc = InvestigatorService(bus)
    try:
        caplog.set_level("INFO", logger=investigator_module.__name__)
        recorder.changes = {"installed": ["docker", "flannel"], "already_present": [],
                            "configured": ["/etc/default/flanneld"], "restarted": ["flanneld", "docker"]}
        add_host(storage, "127.0.1.7")
        svc.run_batch(["127.0.1.7"])
        recorder.changes = {"installed": [], "already_present": ["docker", "flannel"],
                            "configured": [], "restarted": []}
        add_host(storage, "127.0.1.8")
        svc.run_batch(["127.0.1.8"])
    finally:
        svc.stop()
    lines = [r.getMessage() for r in caplog.records if "bootstrapped" in r.getMessage()]
    assert lines == [
        "host 127.0.1.7 bootstrapped, disassociated: installed docker, flannel; "
        "wrote /etc/default/flanneld; restarted flanneld, docker",
        "host 127.0.1.8 bootstrapped, disassociated: nothing to change "
        "(already present: docker, flannel)"]
