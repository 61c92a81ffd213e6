"""Two watcher processes share the hosts, and one takes over when the other dies.

The distributed stack (Redis, etcd, one process per service) with a second
watcher process started beside the first, against lab hosts registered through
the REST API. Each watcher logs how many hosts each of its cycles checked; the
two together must check every host once per cycle, and after a `kill -9` of one
the survivor must notice stopped hosts that were the dead one's.
"""
from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.waiting import wait_for
from tools.lab import Lab
from tools.stack import DistributedStack, running

pytestmark = pytest.mark.integration

WATCH_INTERVAL = 1.0
LAB_HOSTS, ADDRESSES_EACH = 4, 4  # 16 host records: all on one side by chance is 2/65536
WATCHERS = ("watcher", "watcher-2")
CHECKED = re.compile(r"checked (\d+) host\(s\), (\d+) failed")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(reboot_time=1.0) as lab:
        yield lab


@pytest.fixture(scope="module")
def stack() -> Iterator[DistributedStack]:
    with running(DistributedStack(service_config={"watcher": {"interval": WATCH_INTERVAL}})
                 ) as stack:
        stack.procs.start("watcher-2", stack.service_argv("watcher"))
        yield stack


@pytest.fixture(scope="module")
def addresses(stack: DistributedStack, lab: Lab) -> list[str]:
    """Every address registered and bootstrapped (several per lab host)."""
    api = stack.session()
    hosts = lab.start_hosts(LAB_HOSTS)
    registered = []
    for host in hosts:
        for address in [host.address, *lab.add_addresses(host, ADDRESSES_EACH - 1)]:
            response = api.put(f"{stack.base_url}/host/{address}",
                               json={"ssh_priv_key": lab.private_key_b64})
            assert response.status_code == 201, response.text
            registered.append(address)
    wait_for(lambda: statuses(api, stack) == {"disassociated": len(registered)}, 180,
             "every address bootstrapped")
    return registered


def statuses(api: requests.Session, stack: DistributedStack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in api.get(f"{stack.base_url}/hosts").json():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    return counts


def records(api: requests.Session, stack: DistributedStack) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in api.get(f"{stack.base_url}/hosts").json()}


def last_cycle(stack: DistributedStack, watcher: str) -> tuple[int, int] | None:
    """(checked, failed) of the watcher's latest cycle that checked anything."""
    found = CHECKED.findall(stack.procs.tail(watcher, 20000))
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def test_two_watchers_split_the_hosts(stack: DistributedStack, addresses: list[str]) -> None:
    def split() -> Any:
        cycles = [last_cycle(stack, name) for name in WATCHERS]
        if all(c is not None and c[0] > 0 for c in cycles) and \
                sum(c[0] for c in cycles if c) == len(addresses):
            return cycles
        return None

    cycles = wait_for(split, 30, "both watchers checking a share, every host once")
    assert all(failed == 0 for _, failed in cycles)
    api = stack.session()
    before = records(api, stack)
    time.sleep(3 * WATCH_INTERVAL)
    after = records(api, stack)
    stale = [a for a in addresses if after[a]["last_check"] == before[a]["last_check"]]
    assert stale == [], f"hosts no watcher checked: {stale}"


def test_a_dead_watchers_hosts_are_taken_over(stack: DistributedStack, lab: Lab,
                                              addresses: list[str]) -> None:
    api = stack.session()
    stack.procs.kill("watcher-2", signal.SIGKILL)
    for host in lab.hosts:
        host.stop()
    stopped = time.monotonic()
    # The survivor drops the dead peer after three missed heartbeats (interval / 2
    # each, at least 0.5 s), then its next cycle probes every host.
    wait_for(lambda: statuses(api, stack) == {"failed": len(addresses)},
             2 * WATCH_INTERVAL + 1.5 + 15, "every host failed, the dead watcher's too")
    took = time.monotonic() - stopped
    assert took <= 2 * WATCH_INTERVAL + 1.5 + 5, f"all failed only after {took:.1f} s"
    # The cycle's summary is logged after its last update: give it a moment.
    wait_for(lambda: last_cycle(stack, "watcher") == (len(addresses), len(addresses)),
             WATCH_INTERVAL + 5, "the survivor's cycle checked and failed every host")
    reasons = {r["status_reason"] for r in records(api, stack).values()}
    assert all("cannot reach" in reason for reason in reasons), reasons
    for host in lab.hosts:
        host.start()
    wait_for(lambda: statuses(api, stack) == {"disassociated": len(addresses)}, 30,
             "every host back")
