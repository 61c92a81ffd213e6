"""Each service's settings are one frozen dataclass, parsed once from its config
object: every value converted and checked, an unknown key refused by name."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from commissaire.config import ConfigError
from commissaire_service.builders import BUILDERS, check_services_config
from commissaire_service.settings import (
    ClusterExecSettings,
    ContainerMgrSettings,
    InvestigatorSettings,
    StorageSettings,
    WatcherSettings,
)


def test_the_defaults_are_the_documented_ones() -> None:
    watcher = WatcherSettings.parse({}, "watcher")
    assert (watcher.interval, watcher.concurrency, watcher.ssh_allowed_networks) == (30.0, 100, ())
    execs = ClusterExecSettings.parse({}, "clusterexec")
    assert (execs.gate_timeout, execs.lease_ttl, execs.gate_poll, execs.batch_window,
            execs.forks) == (600.0, 10, 0.1, 0.15, 50)
    assert ContainerMgrSettings.parse({}, "containermgr").certificate_dirs == (
        "/etc/commissaire/containermgr",)
    assert InvestigatorSettings.parse({}, "investigator").batch_window == 0.5
    assert (watcher.bus_uri, watcher.bus_exchange, watcher.bus_timeout, watcher.threads) == (
        "redis://127.0.0.1:6379/", "commissaire", 10.0, 4)


def test_values_are_converted_once_and_frozen() -> None:
    settings = ClusterExecSettings.parse({"gate-timeout": 20, "lease-ttl": 3, "forks": 5,
                                          "ssh-allowed-networks": ["127.0.0.0/8"]}, "clusterexec")
    assert settings.gate_timeout == 20.0 and isinstance(settings.gate_timeout, float)
    assert settings.ssh().forks == 5 and settings.ssh_allowed_networks == ("127.0.0.0/8",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lease_ttl = 4  # type: ignore[misc]


@pytest.mark.parametrize(("cls", "config", "message"), [
    (WatcherSettings, {"intervall": 5}, "intervall: not a setting of the watcher; did you mean interval?"),
    (WatcherSettings, {"forks": 5}, "forks: not a setting of the watcher; settings: "),
    (WatcherSettings, {"interval": "5"}, "interval: must be a number"),
    (WatcherSettings, {"interval": True}, "interval: must be a number"),
    (WatcherSettings, {"interval": 0}, "interval: must be at least 0.1"),
    (WatcherSettings, {"concurrency": 2.5}, "concurrency: must be a whole number"),
    (ClusterExecSettings, {"ssh-allowed-networks": "127.0.0.0/8"},
     "ssh-allowed-networks: must be a list of strings"),
    (ClusterExecSettings, {"ssh-allowed-networks": ["not a network"]}, "ssh-allowed-networks"),
    (ContainerMgrSettings, {"certificate-dirs": ["relative"]}, "certificate-dirs: must be a list of"),
    (ContainerMgrSettings, {"allowed-urls": ["ftp://*:21"]}, "allowed-urls"),
    (StorageSettings, {"secrets-accept-format-1": "yes"}, "secrets-accept-format-1: must be true or false"),
    (StorageSettings, {"storage-handlers": ["etcd"]}, "storage-handlers: must be a list of objects"),
    (InvestigatorSettings, {"release-mirror": "ftp://x"}, "release-mirror: must be an http://"),
    (InvestigatorSettings, {"package-mirror": {}}, "package-mirror: not a setting of the investigator; "
                                                   "did you mean package-mirrors?"),
])
def test_a_bad_setting_is_refused_by_name(cls: Any, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cls.parse(config, cls.__name__.removesuffix("Settings").lower())
    assert message in str(caught.value)


def test_a_hostile_key_is_not_echoed_whole() -> None:
    with pytest.raises(ConfigError) as caught:
        WatcherSettings.parse({"x\n" + "y" * 500: 1}, "watcher")
    assert "\n" not in str(caught.value) and "y" * 100 not in str(caught.value)


def test_the_storage_settings_take_the_older_spellings() -> None:
    settings = StorageSettings.parse({"storage_handlers": [{"name": "commissaire.storage.sqlite"}],
                                      "secrets_key_file": "/k"}, "storage")
    assert settings.storage_handlers == ({"name": "commissaire.storage.sqlite"},)
    assert settings.secrets_key_file == "/k"


def test_the_all_in_one_check_names_the_service() -> None:
    with pytest.raises(ConfigError, match="^watcher: intervall: not a setting of the watcher"):
        check_services_config({"watcher": {"intervall": 5}})
    check_services_config({name: {} for name in BUILDERS})  # every default is valid
