"""ssh-allowed-networks: no SSH path reaches an address outside the allowed networks."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from commissaire import reach
from commissaire.ansible import runner
from commissaire.ssh import ProbeTarget, fetch_host_key, probe


@pytest.fixture
def lab_only() -> Iterator[None]:
    reach.set_allowed_networks(["127.0.0.0/8"])
    yield
    reach.set_allowed_networks([])


def test_no_networks_means_any() -> None:
    assert reach.refusal("192.0.2.1") == ""


def test_outside_is_refused_with_the_reason(lab_only: None) -> None:
    assert reach.refusal("127.0.100.1") == ""
    assert "ssh-allowed-networks: 127.0.0.0/8" in reach.refusal("192.0.2.1")


def test_probe_and_host_key_fetch_refuse_before_connecting(lab_only: None) -> None:
    result = asyncio.run(probe(ProbeTarget("192.0.2.1", "key", "root", 22, "")))
    assert not result.ok and "outside the networks" in result.message
    with pytest.raises(ConnectionRefusedError, match="outside the networks"):
        asyncio.run(fetch_host_key("192.0.2.1"))


def test_playbook_runs_skip_refused_targets(lab_only: None) -> None:
    target = runner.Target(address="192.0.2.1", private_key="k", user="root", port=22,
                           host_key="", hostvars={})
    result = runner.run_playbook("facts.yml", [target])
    assert result.hosts["192.0.2.1"].outcome == runner.UNREACHABLE
    assert "outside the networks" in result.hosts["192.0.2.1"].message


def test_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        reach.set_allowed_networks(["nope"])
