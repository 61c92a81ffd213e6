"""Services whose work lands in later increments; they already join the bus and
answer `ping`, so deployments, systemd units and GET /api/v0/status are complete.
"""
from __future__ import annotations

from typing import Any

from commissaire_service.service import Service


class InvestigatorService(Service):
    name = "investigator"

    @property
    def routing_keys(self) -> list[str]:
        return ["investigator.*", "jobs.investigate"]


class WatcherService(Service):
    name = "watcher"


class ClusterExecService(Service):
    name = "clusterexec"

    @property
    def routing_keys(self) -> list[str]:
        return ["clusterexec.*", "jobs.clusterexec.*"]


class ContainerManagerService(Service):
    # DESIGN: container-manager calls are routed as container.<method>.
    name = "container"

    def health(self) -> dict[str, Any]:
        return {"service_process": "containermgr"}


SERVICES: dict[str, type[Service]] = {
    "investigator": InvestigatorService,
    "watcher": WatcherService,
    "clusterexec": ClusterExecService,
    "containermgr": ContainerManagerService,
}
