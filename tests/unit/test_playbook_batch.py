"""Hosts starting together share one Ansible run; each gets its own result."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from commissaire.ansible import runner
from commissaire_service.clusterexec.batch import PlaybookBatcher


def target(address: str) -> runner.Target:
    return runner.Target(address=address, private_key="k", user="root", port=22,
                         host_key="", hostvars={})


def test_concurrent_hosts_share_a_run_and_later_ones_get_another() -> None:
    runs: list[list[str]] = []

    def run(playbook: str, targets: list[runner.Target], extravars: dict[str, Any]
            ) -> runner.RunResult:
        runs.append([t.address for t in targets])
        return runner.RunResult({t.address: runner.HostResult(
            runner.OK if t.address != "127.0.0.3" else runner.FAILED, t.address)
            for t in targets}, "successful")

    batcher = PlaybookBatcher(run, window=0.2)
    results: dict[str, runner.HostResult] = {}

    def act(address: str) -> None:
        results[address] = batcher.run("restart.yml", target(address), {"id": "op"})

    threads = [threading.Thread(target=act, args=(f"127.0.0.{i}",)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    act("127.0.0.4")
    assert sorted(runs[0]) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"] and runs[1] == ["127.0.0.4"]
    assert results["127.0.0.3"].outcome == runner.FAILED
    assert results["127.0.0.1"].outcome == runner.OK and results["127.0.0.1"].message == "127.0.0.1"


def test_different_variables_never_share_a_run_and_errors_reach_every_host() -> None:
    seen: list[dict[str, Any]] = []

    def run(playbook: str, targets: list[runner.Target], extravars: dict[str, Any]
            ) -> runner.RunResult:
        seen.append(extravars)
        raise RuntimeError("ansible exploded")

    batcher = PlaybookBatcher(run, window=0.05)
    errors: list[str] = []

    def act(address: str, version: str) -> None:
        try:
            batcher.run("deploy.yml", target(address), {"version": version})
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=act, args=(f"127.0.0.{i}", str(i % 2))) for i in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 2
    assert sorted(v["version"] for v in seen) == ["0", "1"]
    assert errors == ["ansible exploded"] * 4


@pytest.mark.parametrize("window", [0.0])
def test_no_window_runs_each_alone(window: float) -> None:
    count = []
    batcher = PlaybookBatcher(lambda p, t, e: count.append(1) or runner.RunResult(
        {x.address: runner.HostResult(runner.OK) for x in t}, "successful"), window=window)
    assert batcher.run("restart.yml", target("127.0.0.9"), {}).outcome == runner.OK
    assert count == [1]
