"""Each service's settings, typed: one frozen dataclass per service, parsed once
from its config file (a JSON object with hyphenated keys, seed chapter 3).

Each field declares its key, its default and what it means, once; `parse`
reads that declaration to convert and check every value and refuses a key that
is no setting of the service (naming the nearest one), so a typo never leaves a
setting silently at its default. The investigator's bootstrap settings keep
their own schema (investigator/settings.py) and are parsed by it from the same
object.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from commissaire.ansible.runner import SSHSettings
from commissaire.config import ConfigError
from commissaire.reach import Reach
from commissaire_service.containermgr.allow import AllowedURLs
from commissaire_service.investigator.settings import SCHEMA as BOOTSTRAP_SCHEMA
from commissaire_service.investigator.settings import BootstrapSettings, printable

S = TypeVar("S", bound="ServiceSettings")
T = TypeVar("T")


def setting(key: str, default: T, doc: str, minimum: float | None = None,
            alias: str = "") -> T:
    """A field read from `key` of the config file (or its older spelling
    `alias`); `doc` is what the README says."""
    return dataclasses.field(default=default, metadata={"key": key, "doc": doc,
                                                        "minimum": minimum, "alias": alias})


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """What every service process reads: how to reach the bus."""

    bus_uri: str = setting("bus-uri", "redis://127.0.0.1:6379/", "the message bus")
    bus_exchange: str = setting("bus-exchange", "commissaire", "the bus exchange")
    bus_timeout: float = setting("bus-timeout", 10.0, "seconds a bus call waits for its answer",
                                 minimum=0.1)
    threads: int = setting("threads", 4, "consumers sharing the service's queue", minimum=1)

    #: keys read by another parser from the same object (none here)
    other_keys: typing.ClassVar[tuple[str, ...]] = ()

    @classmethod
    def keys(cls) -> dict[str, dataclasses.Field[object]]:
        """Each key the config file may hold (aliases included) -> its field."""
        keys = {f.metadata["key"]: f for f in dataclasses.fields(cls) if "key" in f.metadata}
        keys.update({f.metadata["alias"]: f for f in keys.values() if f.metadata["alias"]})
        return keys

    @classmethod
    def parse(cls: type[S], config: Mapping[str, object], service: str) -> S:
        """The settings in `config`; ConfigError names the setting (its caller, the
        service)."""
        if not isinstance(config, Mapping):
            raise ConfigError("its settings must be a JSON object")
        fields = cls.keys()
        for key in config:
            if key not in fields and key not in cls.other_keys:
                known = [*fields, *cls.other_keys]
                near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
                hint = f"did you mean {near[0]}?" if near else f"settings: {', '.join(sorted(known))}"
                raise ConfigError(f"{printable(str(key))[:64]}: not a setting of the {service}; {hint}")
        hints = typing.get_type_hints(cls)
        values = {f.name: _convert(key, config[key], hints[f.name], f.metadata["minimum"])
                  for key, f in fields.items() if key in config and config[key] is not None}
        parsed = cls(**values)
        try:
            parsed.check()
        except ValueError as exc:  # the setting's own parser names it
            raise ConfigError(str(exc)) from None
        return parsed

    def check(self) -> None:
        """Checks beyond each value's type (ValueError naming the setting)."""


@dataclasses.dataclass(frozen=True)
class SSHServiceSettings(ServiceSettings):
    """A service that reaches hosts over SSH."""

    ssh_allowed_networks: tuple[str, ...] = setting(
        "ssh-allowed-networks", (), "CIDR networks SSH may reach (empty: any)")
    ssh_kex_algorithms: str = setting(
        "ssh-kex-algorithms", "", "SSH key exchange algorithms, e.g. curve25519-sha256 "
        "(empty: the OpenSSH/asyncssh default)")

    def reach(self) -> Reach:
        return Reach.from_setting(list(self.ssh_allowed_networks))

    def check(self) -> None:
        self.reach()


@dataclasses.dataclass(frozen=True)
class AnsibleServiceSettings(SSHServiceSettings):
    """A service that runs Ansible."""

    forks: int = setting("forks", 50, "Ansible forks", minimum=1)

    def ssh(self) -> SSHSettings:
        return SSHSettings(kex_algorithms=self.ssh_kex_algorithms, forks=self.forks,
                           reach=self.reach())


@dataclasses.dataclass(frozen=True)
class InvestigatorSettings(AnsibleServiceSettings):
    batch_window: float = setting("batch-window", 0.5,
                                  "seconds new hosts are gathered into one Ansible run", minimum=0)
    #: mirrors, pins, keys, Kubernetes minor: checked by BootstrapSettings
    bootstrap: BootstrapSettings = dataclasses.field(default_factory=BootstrapSettings)

    other_keys = tuple(BOOTSTRAP_SCHEMA["properties"])

    @classmethod
    def parse(cls, config: Mapping[str, object], service: str) -> InvestigatorSettings:
        parsed = super().parse(config, service)
        return dataclasses.replace(parsed, bootstrap=BootstrapSettings.from_config(dict(config)))


@dataclasses.dataclass(frozen=True)
class WatcherSettings(SSHServiceSettings):
    interval: float = setting("interval", 30.0, "seconds between checks of a host", minimum=0.1)
    concurrency: int = setting("concurrency", 100, "probes at once", minimum=1)


@dataclasses.dataclass(frozen=True)
class ClusterExecSettings(AnsibleServiceSettings):
    gate_timeout: float = setting("gate-timeout", 600.0, "seconds a host may take to come back",
                                  minimum=1)
    lease_ttl: int = setting("lease-ttl", 10, "seconds of the operation lease", minimum=1)
    gate_poll: float = setting("gate-poll", 0.1, "seconds between health probes", minimum=0.01)
    batch_window: float = setting("batch-window", 0.15,
                                  "hosts starting within this many seconds share one Ansible run",
                                  minimum=0)


@dataclasses.dataclass(frozen=True)
class ContainerMgrSettings(ServiceSettings):
    drain_poll_interval: float = setting("drain-poll-interval", 1.0,
                                         "seconds between checks that evicted pods are gone",
                                         minimum=0.01)
    allowed_urls: tuple[str, ...] = setting(
        "allowed-urls", (), "the API servers a container manager's server_url may name")
    certificate_dirs: tuple[str, ...] = setting(
        "certificate-dirs", ("/etc/commissaire/containermgr",),
        "the only directories a container manager's certificate files may be in")

    def allowed(self) -> AllowedURLs:
        return AllowedURLs.from_setting(list(self.allowed_urls))

    def check(self) -> None:
        if not all(d.startswith("/") for d in self.certificate_dirs):
            raise ConfigError("certificate-dirs: must be a list of absolute directory paths")
        self.allowed()


@dataclasses.dataclass(frozen=True)
class StorageSettings(ServiceSettings):
    storage_handlers: tuple[dict[str, object], ...] = setting(
        "storage-handlers", (), "the stores and the models each keeps (empty: etcd on "
        "http://127.0.0.1:2379 for every model)", alias="storage_handlers")
    secrets_key_file: str = setting(
        "secrets-key-file", "", "the key that encrypts host credentials at rest (required)",
        alias="secrets_key_file")
    secrets_accept_format_1: bool = setting(
        "secrets-accept-format-1", True, "read credentials sealed by the first version's format")
    events_max_age: float = setting(
        "events-max-age", 30 * 86400.0, "seconds the activity stream keeps an entry "
        "(default 30 days)", minimum=1)
    events_max_count: int = setting(
        "events-max-count", 100_000, "entries the activity stream keeps at most (the oldest "
        "go first)", minimum=1)


def _convert(key: str, value: object, kind: object, minimum: float | None) -> Any:
    """`value` checked and converted to the field's type `kind` (each field has its own
    type, so the answer is untyped)."""
    where = key
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string")
        return value
    if kind in (int, float):
        # JSON true is not a number here, and an int setting takes no fraction
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                (kind is int and not isinstance(value, int)):
            raise ConfigError(f"{where}: must be {'a whole number' if kind is int else 'a number'}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: must be a finite number")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum:g}")
        return int(value) if kind is int else float(value)
    if kind == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: must be a list of strings")
        return tuple(value)
    if kind == tuple[dict[str, object], ...]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(f"{where}: must be a list of objects")
        return tuple(value)
    raise TypeError(f"{where}: no conversion for {kind!r}")  # a field of a new type
