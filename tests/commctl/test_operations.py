"""Rolling operations through commctl: start with options, status, abort, --watch.

No clusterexec service runs here: the tests move an operation on through the
storage service, as clusterexec would, between two looks of --watch.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from commctl import watch
from commctl.client import Client
from commctl.config import Settings
from commctl.exitstatus import ExitStatus
from commissaire.models import model_class
from tests.commctl.conftest import PASSWORD, USER, Commctl, LiveServer, Terminal

HOSTS = ("10.0.0.1", "10.0.0.2")


@pytest.fixture
def cluster(commctl: Commctl, key_file: Path) -> str:
    assert commctl("cluster", "create", "c1").code == 0
    for address in HOSTS:
        assert commctl("host", "create", "-c", "c1", address, str(key_file)).code == 0
    return "c1"


def advance(server: LiveServer, kind: str, states: dict[str, str], status: str = "",
            reason: str = "") -> None:
    """Record progress as clusterexec would."""
    record = server.storage.get_operation(kind, "c1")
    for address, state in states.items():
        record["hosts"][address]["state"] = state
    if status:
        record.update(status=status, reason=reason, finished_at="2030-01-01T00:00:00")
    server.storage.repo.change([(kind, "c1", "")], lambda _current, snap: snap.put(
        model_class(kind).from_dict(record)))


def stepper(monkeypatch: pytest.MonkeyPatch, steps: list[Callable[[], None]]) -> None:
    """Each pause of --watch applies the next step."""
    def sleep(seconds: float) -> None:
        steps.pop(0)()
    monkeypatch.setattr(watch, "time", SimpleNamespace(sleep=sleep))


def test_start_sends_the_rolling_options(commctl: Commctl, cluster: str) -> None:
    result = commctl("-o", "json", "cluster", "restart", "start", "c1", "--max-unavailable", "50%",
                     "--failure-tolerance", "1", "--no-drain", "--drain-timeout", "30")
    assert result.code == 0, result.err
    assert result.json["status"] == "in_process"
    assert result.json["options"] == {"max_unavailable": "50%", "failure_tolerance": 1,
                                      "drain": False, "drain_timeout": 30}
    assert sorted(result.json["hosts"]) == list(HOSTS)
    again = commctl("cluster", "restart", "start", "c1")
    assert again.code == ExitStatus.CONFLICT
    assert "already in process" in again.err


def test_deploy_takes_a_version_and_upgrade_a_number(commctl: Commctl, cluster: str) -> None:
    deploy = commctl("cluster", "deploy", "start", "c1", "7.2.6", "--drain")
    assert deploy.code == 0
    assert deploy.out.startswith("Deploy of cluster c1: in_process (version 7.2.6)")
    assert "hosts: 2 (2 pending)" in deploy.out
    shown = commctl("-o", "json", "cluster", "deploy", "status", "c1").json
    assert shown["version"] == "7.2.6" and shown["options"] == {"drain": True}
    upgrade = commctl("-o", "json", "cluster", "upgrade", "start", "c1", "--max-unavailable", "2")
    assert upgrade.json["options"] == {"max_unavailable": 2}
    assert commctl("cluster", "upgrade", "start", "c1", "--max-unavailable", "0").code == \
        ExitStatus.USAGE
    assert commctl("cluster", "deploy", "start", "c1").code == ExitStatus.USAGE  # no VERSION


def test_status_table_and_abort(commctl: Commctl, cluster: str) -> None:
    commctl("cluster", "restart", "start", "c1")
    table = commctl("cluster", "restart", "status", "c1").out.splitlines()
    assert table[0] == "Restart of cluster c1: in_process"
    header = table.index(next(line for line in table if line.startswith("ADDRESS")))
    assert [line.split()[:2] for line in table[header + 1:]] == [
        ["10.0.0.1", "pending"], ["10.0.0.2", "pending"]]
    aborted = commctl("-o", "json", "cluster", "restart", "abort", "c1")
    assert aborted.code == 0 and aborted.json["status"] == "aborted"
    # --watch on an operation that is over returns at once: aborted is a failure.
    watched = commctl("cluster", "restart", "status", "c1", "--watch")
    assert watched.code == ExitStatus.ERROR
    assert "skipped" in watched.out
    assert commctl("cluster", "upgrade", "status", "c1").code == ExitStatus.NOT_FOUND


def test_watch_redraws_until_finished(commctl: Commctl, cluster: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server, kind = commctl.server, "ClusterRestart"
    stepper(monkeypatch, [
        lambda: advance(server, kind, {"10.0.0.1": "in_process"}),
        lambda: None,  # nothing changed: nothing printed
        lambda: advance(server, kind, {"10.0.0.1": "done", "10.0.0.2": "in_process"}),
        lambda: advance(server, kind, {"10.0.0.2": "done"}, status="finished"),
    ])
    result = commctl("cluster", "restart", "start", "c1", "--watch", "--interval", "0.01")
    assert result.code == ExitStatus.OK, result.err
    drawings = result.out.split("Restart of cluster c1: ")[1:]
    assert len(drawings) == 4
    assert "(2 pending)" in drawings[0]
    assert "(1 in_process, 1 pending)" in drawings[1]
    assert drawings[3].startswith("finished") and "(2 done)" in drawings[3]


def test_watch_failed_is_exit_1_and_json_is_one_line_per_change(
        commctl: Commctl, cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server, kind = commctl.server, "ClusterUpgrade"
    commctl("cluster", "upgrade", "start", "c1")
    stepper(monkeypatch, [
        lambda: advance(server, kind, {"10.0.0.1": "in_process"}),
        lambda: advance(server, kind, {"10.0.0.1": "failed"}, status="failed",
                        reason="10.0.0.1: unreachable after reboot"),
    ])
    result = commctl("-o", "json", "cluster", "upgrade", "status", "c1", "-w",
                     "--interval", "0.01")
    assert result.code == ExitStatus.ERROR
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [line["status"] for line in lines] == ["in_process", "in_process", "failed"]
    assert lines[-1]["reason"] == "10.0.0.1: unreachable after reboot"


def test_watch_on_a_terminal_redraws_in_place(server: LiveServer, commctl: Commctl,
                                              cluster: str) -> None:
    commctl("cluster", "restart", "start", "c1")
    client = Client(Settings(endpoints=[server.url], basic_auth=(USER, PASSWORD)))
    out = Terminal()
    steps: list[Any] = [lambda: None,
                        lambda: advance(server, "ClusterRestart", {}, status="finished")]
    status = watch.follow(client, "c1", "restart", "table", out, 0.01, is_tty=True,
                          sleep=lambda _: steps.pop(0)())
    assert status == ExitStatus.OK
    # Redrawn each time, even when unchanged, at the top of a cleared screen.
    assert out.getvalue().count(watch.CLEAR) == 3


def test_the_seeds_upgrade_example_with_a_version_works_and_says_it_is_ignored(
        commctl: Commctl, cluster: str) -> None:
    upgrade = commctl("-o", "json", "cluster", "upgrade", "start", "c1", "7.2.2")
    assert upgrade.code == 0, upgrade.err
    assert upgrade.json["status"] == "in_process"
    assert "'7.2.2' ignored" in upgrade.err
