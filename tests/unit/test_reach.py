"""ssh-allowed-networks: no SSH path reaches an address outside the allowed networks,
and each service keeps its own setting (no module-global state)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from commissaire.ansible import runner
from commissaire.reach import Reach
from commissaire.ssh import ProbeTarget, fetch_host_key, probe, probe_many
from commissaire_service import builders

LAB_ONLY = Reach.from_setting(["127.0.0.0/8"])


def test_no_networks_means_any() -> None:
    assert Reach().refusal("192.0.2.1") == ""
    assert Reach.from_setting(None).refusal("192.0.2.1") == ""


def test_outside_is_refused_with_the_reason() -> None:
    assert LAB_ONLY.refusal("127.0.100.1") == ""
    assert "ssh-allowed-networks: 127.0.0.0/8" in LAB_ONLY.refusal("192.0.2.1")
    assert LAB_ONLY.refusal("not-an-ip") == "not-an-ip is not an IP address"


def test_probe_and_host_key_fetch_refuse_before_connecting() -> None:
    result = asyncio.run(probe(ProbeTarget("192.0.2.1", "key", "root", 22, ""), reach=LAB_ONLY))
    assert not result.ok and "outside the networks" in result.message
    results = asyncio.run(probe_many([ProbeTarget("192.0.2.1", "key")], reach=LAB_ONLY))
    assert "outside the networks" in results["192.0.2.1"].message
    with pytest.raises(ConnectionRefusedError, match="outside the networks"):
        asyncio.run(fetch_host_key("192.0.2.1", reach=LAB_ONLY))


def test_playbook_runs_skip_refused_targets() -> None:
    target = runner.Target(address="192.0.2.1", private_key="k", user="root", port=22,
                           host_key="", hostvars={})
    result = runner.run_playbook("facts.yml", [target],
                                 settings=runner.SSHSettings(reach=LAB_ONLY))
    assert result.hosts["192.0.2.1"].outcome == runner.UNREACHABLE
    assert "outside the networks" in result.hosts["192.0.2.1"].message


def test_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match="ssh-allowed-networks: 'nope'"):
        Reach.from_setting(["nope"])
    with pytest.raises(ValueError, match="must be a list"):
        Reach.from_setting("127.0.0.0/8")


class _Bus:
    def call(self, *args: Any, **kwargs: Any) -> Any:
        return []

    def notify(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_each_service_gets_its_own_setting_in_one_process() -> None:
    """The all-in-one builds every service in one process: a confined service must
    stay confined whatever another service's setting is (a module global did not)."""
    bus: Any = _Bus()
    confined: Any = builders.build_clusterexec({"ssh-allowed-networks": ["127.0.0.0/8"]}, bus)
    free: Any = builders.build_clusterexec({}, bus)
    watcher = builders.WatcherService(bus, start=False, reach=LAB_ONLY)
    investigator: Any = builders.build_investigator({"ssh-allowed-networks": ["10.0.0.0/8"]},
                                                    bus)
    try:
        assert "outside the networks" in confined.settings.ssh.reach.refusal("192.0.2.1")
        assert free.settings.ssh.reach.refusal("192.0.2.1") == ""
        assert "10.0.0.0/8" in investigator.ssh.reach.refusal("127.0.0.1")
        assert watcher.reach.refusal("127.0.0.1") == ""
    finally:
        for service in (confined, free, investigator, watcher):
            service.stop()


def test_a_bad_setting_stops_the_service_build() -> None:
    with pytest.raises(ValueError, match="'10.0.0.300/8'"):
        builders.build_watcher({"ssh-allowed-networks": ["10.0.0.300/8"]}, _Bus())  # type: ignore[arg-type]
