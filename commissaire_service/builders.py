"""How each service (but storage, which needs its store) is built from its
config file and a bus client: the one list both modes start from."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from commissaire.ansible.runner import SSHSettings
from commissaire.bus import BusClient
from commissaire.config import ConfigError
from commissaire.reach import Reach
from commissaire_service.clusterexec.executor import Settings
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.containermgr.allow import AllowedURLs
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


def check_services_config(services: dict[str, Any]) -> None:
    """Check every service's settings before anything starts (the all-in-one builds
    its services inside the server's worker, where a bad setting would only be a
    traceback); ConfigError names the service and the setting."""
    for name, config in services.items():
        if name not in BUILDERS:
            raise ConfigError(f"{name}: not a service (services: {', '.join(BUILDERS)})")
        if not isinstance(config, dict):
            raise ConfigError(f"{name}: its settings must be a JSON object")
        try:
            if name == "investigator":
                BootstrapSettings.from_config(config)
            if name == "containermgr":
                AllowedURLs.from_setting(config.get("allowed-urls"))
            else:
                _reach(config)
        except ValueError as exc:  # ConfigError included
            raise ConfigError(f"{name}: {exc}") from None
