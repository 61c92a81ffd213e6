"""Operations (restart, upgrade, deploy) refuse hosts they cannot trust: no pinned
host key, or an OS that is not one of our profiles. The host's entry fails with
the reason and nothing touches the host (no probe, no playbook)."""
from __future__ import annotations

from typing import Any

import pytest

from commissaire_service.clusterexec.service import ClusterExecService
from tests.unit.test_clusterexec import Fleet, settings, wait_done
from tests.unit.test_clusterexec import world as world  # noqa: F401  (the fixture)


class Watching(Fleet):
    """The fleet, remembering every host a probe or a playbook reached."""

    def __init__(self, fleet: Fleet) -> None:
        self.__dict__.update(fleet.__dict__)
        self.touched: set[str] = set()

    def run_playbook(self, playbook: str, targets: list[Any], **kw: Any) -> Any:
        self.touched.update(t.address for t in targets)
        return super().run_playbook(playbook, targets, **kw)

    async def probe(self, target: Any, *args: Any, **kw: Any) -> Any:
        self.touched.add(target.address)
        return await super().probe(target, *args, **kw)


@pytest.mark.parametrize("changes, reason", [
    ({"ssh_host_key": ""}, "no SSH host key is pinned for 127.0.3.4"),
    ({"os": ""}, "is not a known profile"),
    ({"os": "{{ lookup('pipe', 'id') }}"}, "is not a known profile"),
    ({"os": "../../../../tmp/evil"}, "is not a known profile"),
])
@pytest.mark.parametrize("kind", ["ClusterRestart", "ClusterUpgrade", "ClusterDeploy"])
def test_an_untrusted_host_is_refused_and_never_touched(world, monkeypatch,  # type: ignore[no-untyped-def]  # noqa: F811
                                                        kind: str, changes: dict[str, str],
                                                        reason: str) -> None:
    bus, storage, fleet = world
    from commissaire_service.clusterexec import executor as executor_module
    watching = Watching(fleet)
    monkeypatch.setattr(executor_module.runner, "run_playbook", watching.run_playbook)
    monkeypatch.setattr(executor_module, "probe", watching.probe)
    storage.update_host("127.0.3.4", changes)
    svc = ClusterExecService(bus, lease_ttl=3, settings=settings(), start=False)
    body: dict[str, Any] = {"name": "c1", "options": {"max_unavailable": 3,
                                                      "failure_tolerance": 10}}
    if kind == "ClusterDeploy":
        body["version"] = "2.0"
    storage.start_operation(kind, body)
    assert svc.try_run(kind, "c1")
    op = wait_done(storage, kind)
    refused = op["hosts"]["127.0.3.4"]
    assert refused["state"] == "failed"
    assert reason in refused["reason"] and "refusing to" in refused["reason"]
    assert refused["events"][-1]["event"].startswith("failed: ")
    assert "127.0.3.4" not in watching.touched
    assert len(watching.touched) == 9  # the others were acted on (a deploy then fails
    # their gate here: the simulated fleet reports no versions)
