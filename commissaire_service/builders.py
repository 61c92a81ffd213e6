"""How each service (but storage, which needs its store) is built from its
config file and a bus client: the one list both modes start from."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from commissaire.bus import BusClient
from commissaire.config import ConfigError
from commissaire_service.clusterexec.executor import Settings
from commissaire_service.clusterexec.service import ClusterExecService
from commissaire_service.containermgr.service import ContainerManagerService
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.service import Service
from commissaire_service.settings import (
    ClusterExecSettings,
    ContainerMgrSettings,
    InvestigatorSettings,
    ServiceSettings,
    StorageSettings,
    WatcherSettings,
)
from commissaire_service.watcher.service import WatcherService

logger = logging.getLogger(__name__)


def _investigator(settings: InvestigatorSettings, bus: BusClient) -> Service:
    logger.info("bootstrap settings: %s", settings.bootstrap.describe())
    return InvestigatorService(bus, batch_window=settings.batch_window, ssh=settings.ssh(),
                               bootstrap=settings.bootstrap)


def _watcher(settings: WatcherSettings, bus: BusClient) -> Service:
    return WatcherService(bus, interval=settings.interval, concurrency=settings.concurrency,
                          kex_algorithms=settings.ssh_kex_algorithms, reach=settings.reach())


def _clusterexec(settings: ClusterExecSettings, bus: BusClient) -> Service:
    return ClusterExecService(bus, lease_ttl=settings.lease_ttl, settings=Settings(
        gate_timeout=settings.gate_timeout, poll=settings.gate_poll,
        batch_window=settings.batch_window, ssh=settings.ssh()))


def _containermgr(settings: ContainerMgrSettings, bus: BusClient) -> Service:
    return ContainerManagerService(bus, poll_interval=settings.drain_poll_interval,
                                   allowed_urls=settings.allowed(),
                                   certificate_dirs=settings.certificate_dirs)


@dataclasses.dataclass(frozen=True)
class ServiceKind:
    """A service (but storage, which needs its store): its settings and how it is built."""

    name: str
    settings: type[ServiceSettings]
    build: Callable[[Any, BusClient], Service]

    def checked(self, config: Any) -> ServiceSettings:
        """The service's settings; ConfigError names the service and the setting."""
        return self.settings.parse(config, self.name)

    def __call__(self, config: dict[str, Any], bus: BusClient) -> Service:
        return self.build(self.checked(config), bus)


BUILDERS: dict[str, ServiceKind] = {kind.name: kind for kind in (
    ServiceKind("investigator", InvestigatorSettings, _investigator),
    ServiceKind("watcher", WatcherSettings, _watcher),
    ServiceKind("clusterexec", ClusterExecSettings, _clusterexec),
    ServiceKind("containermgr", ContainerMgrSettings, _containermgr),
)}

# Each builds its service from a config object (its settings parsed first).
build_investigator = BUILDERS["investigator"]
build_watcher = BUILDERS["watcher"]
build_clusterexec = BUILDERS["clusterexec"]
build_containermgr = BUILDERS["containermgr"]


def check_services_config(services: dict[str, Any]) -> None:
    """Check every service's settings before anything starts (the all-in-one builds
    its services inside the server's worker, where a bad setting would only be a
    traceback); ConfigError names the service and the setting."""
    for name, config in services.items():
        if name == "storage":
            check_allinone_storage(config)
            continue
        if name not in BUILDERS:
            raise ConfigError(f"{name}: not a service (services: storage, {', '.join(BUILDERS)})")
        try:
            BUILDERS[name].checked(config)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None


#: What the all-in-one's "storage" section may set: its store and key are the data dir's.
ALLINONE_STORAGE_KEYS = ("events-max-age", "events-max-count")


def check_allinone_storage(config: Any) -> None:
    """The all-in-one's "storage" section: the activity stream's retention only."""
    if not isinstance(config, dict):
        raise ConfigError("storage: its settings must be a JSON object")
    for key in config:
        if key not in ALLINONE_STORAGE_KEYS:
            raise ConfigError(f"storage: {str(key)[:64]}: not a setting of the all-in-one's "
                              f"storage; settings: {', '.join(ALLINONE_STORAGE_KEYS)}")
    try:
        StorageSettings.parse(config, "storage")
    except ConfigError as exc:
        raise ConfigError(f"storage: {exc}") from None
