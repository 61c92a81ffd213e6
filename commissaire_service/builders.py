"""How each service (but storage, which needs its store) is built from its
config file and a bus client: the one list both modes start from."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from commissaire.ansible.runner import SSHSettings
from commissaire.bus import BusClient
from commissaire.reach import Reach
from commissaire_service.clusterexec.executor import Settings
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.containermgr.service import build_service as build_containermgr
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.investigator.settings import BootstrapSettings
from commissaire_service.service import Service
from commissaire_service.watcher.service import WatcherService

logger = logging.getLogger(__name__)


def _reach(config: dict[str, Any]) -> Reach:
    """`ssh-allowed-networks`: the only networks this service may SSH to (empty: any)."""
    return Reach.from_setting(config.get("ssh-allowed-networks"))


def _ssh(config: dict[str, Any]) -> SSHSettings:
    return SSHSettings(kex_algorithms=config.get("ssh-kex-algorithms", ""),
                       forks=int(config.get("forks", 50)), reach=_reach(config))


def build_investigator(config: dict[str, Any], bus: BusClient) -> Service:
    # Checked before anything starts: a bad setting is a ConfigError naming it.
    bootstrap = BootstrapSettings.from_config(config)
    logger.info("bootstrap settings: %s", bootstrap.describe())
    return InvestigatorService(bus, batch_window=float(config.get("batch-window", 0.5)),
                               ssh=_ssh(config), bootstrap=bootstrap)


def build_watcher(config: dict[str, Any], bus: BusClient) -> Service:
    return WatcherService(bus, interval=float(config.get("interval", 30)),
                          concurrency=int(config.get("concurrency", 100)),
                          kex_algorithms=config.get("ssh-kex-algorithms", ""),
                          reach=_reach(config))


def build_clusterexec(config: dict[str, Any], bus: BusClient) -> Service:
    defaults = Settings()
    return ClusterExecService(bus, lease_ttl=int(config.get("lease-ttl", 10)),
                              settings=Settings(
                                  gate_timeout=float(config.get("gate-timeout", defaults.gate_timeout)),
                                  poll=float(config.get("gate-poll", defaults.poll)),
                                  batch_window=float(config.get("batch-window",
                                                                defaults.batch_window)),
                                  ssh=_ssh(config)))


BUILDERS: dict[str, Callable[[dict[str, Any], BusClient], Service]] = {
    "investigator": build_investigator,
    "watcher": build_watcher,
    "clusterexec": build_clusterexec,
    "containermgr": build_containermgr,
}
