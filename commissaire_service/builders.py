"""How each service (but storage, which needs its store) is built from its
config file and a bus client: the one list both modes start from."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

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

S = TypeVar("S", bound=ServiceSettings)


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
class ServiceKind(Generic[S]):
    """A service: its settings and how it is built from them."""

    name: str
    settings: type[S]
    build: Callable[[S, BusClient], Service]

    def checked(self, config: object) -> S:
        """The service's settings; ConfigError names the service and the setting."""
        if not isinstance(config, Mapping):
            raise ConfigError("its settings must be a JSON object")
        return self.settings.parse(config, self.name)

    def __call__(self, config: Mapping[str, object], bus: BusClient) -> Service:
        return self.build(self.checked(config), bus)


class Builder(Protocol):
    """What BUILDERS holds: a ServiceKind of any settings type."""

    @property
    def name(self) -> str: ...

    def checked(self, config: object) -> ServiceSettings: ...

    def __call__(self, config: Mapping[str, object], bus: BusClient) -> Service: ...


# Each builds its service from a config object (its settings parsed first).
build_investigator = ServiceKind("investigator", InvestigatorSettings, _investigator)
build_watcher = ServiceKind("watcher", WatcherSettings, _watcher)
build_clusterexec = ServiceKind("clusterexec", ClusterExecSettings, _clusterexec)
build_containermgr = ServiceKind("containermgr", ContainerMgrSettings, _containermgr)

#: Every service but storage (which needs its store), by name.
BUILDERS: dict[str, Builder] = {kind.name: kind for kind in (
    build_investigator, build_watcher, build_clusterexec, build_containermgr)}


def check_services_config(services: Mapping[str, object]) -> None:
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


def check_allinone_storage(config: object) -> None:
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
