"""load_handlers: CPD-61 config to handlers, per-model defaults and `source`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from commissaire import errors
from commissaire.storage.etcd import EtcdStoreHandler
from commissaire.storage.registry import HandlerSet, load_handlers
from commissaire.storage.sqlite import SqliteStoreHandler


@pytest.fixture
def config(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        {"name": "commissaire.storage.etcd", "server_url": "http://127.0.0.1:1",
         "prefix": "/x/", "timeout": 1.0, "models": ["*"]},
        {"name": "commissaire.storage.sqlite", "path": str(tmp_path / "s.db"),
         "models": ["Host"]},
    ]


def test_builds_each_handler_with_its_options(config: list[dict[str, Any]],
                                              tmp_path: Path) -> None:
    handlers = load_handlers(config)
    etcd, sqlite = handlers.all()
    assert isinstance(etcd, EtcdStoreHandler) and isinstance(sqlite, SqliteStoreHandler)
    assert (etcd.server_url, etcd.prefix) == ("http://127.0.0.1:1", "/x/")
    assert sqlite.path == str(tmp_path / "s.db")
    handlers.close()


def test_first_handler_listing_a_model_is_its_default(config: list[dict[str, Any]]) -> None:
    handlers = load_handlers(config)
    etcd, sqlite = handlers.all()
    assert handlers.for_model("Host") is etcd  # "*" comes first
    assert handlers.for_model("Cluster") is etcd
    reordered = load_handlers([config[1], config[0]])
    sqlite2, etcd2 = reordered.all()
    assert reordered.for_model("Host") is sqlite2
    assert reordered.for_model("Cluster") is etcd2


def test_source_names_a_handler_by_short_name(config: list[dict[str, Any]]) -> None:
    handlers = load_handlers(config)
    etcd, sqlite = handlers.all()
    assert handlers.for_model("Host", "sqlite") is sqlite
    assert handlers.for_model("Host", "etcd") is etcd
    with pytest.raises(errors.ValidationError, match="names no configured storage handler") \
            as info:
        handlers.for_model("Host", "cloudforms")
    assert info.value.field == "source"


def test_model_without_handler_is_store_unavailable(tmp_path: Path) -> None:
    handlers = load_handlers([{"name": "commissaire.storage.sqlite",
                               "path": str(tmp_path / "s.db"), "models": ["Host"]}])
    with pytest.raises(errors.StoreUnavailable, match="Cluster"):
        handlers.for_model("Cluster")


def test_models_default_to_all() -> None:
    handlers = load_handlers([{"name": "commissaire.storage.sqlite", "path": ":memory:"}])
    assert handlers.for_model("Network") is handlers.all()[0]


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "commissaire.storage.etcd", "server_uri": "http://x:1"}, "no option 'server_uri'"),
    ({"name": "commissaire.storage.nosuch"}, "'commissaire.storage.nosuch' cannot be imported"),
    ({"name": "commissaire.errors"}, "not a storage handler module"),
    ({"models": ["*"]}, "must be a module name"),
    ({"name": "commissaire.storage.sqlite", "models": "Host"}, '"models" must be a list'),
    ({"name": "commissaire.storage.etcd", "server_url": "etcd:2379"}, "server_url"),
    ({"name": "commissaire.storage.etcd", "certificate_path": "/c.pem"}, "certificate_key_path"),
])
def test_bad_config_is_a_clear_value_error(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_handlers([entry])


def test_empty_or_duplicate_config_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        load_handlers([])
    sqlite = {"name": "commissaire.storage.sqlite", "path": ":memory:"}
    with pytest.raises(ValueError, match="configured twice"):
        load_handlers([sqlite, dict(sqlite)])


def test_close_closes_every_handler() -> None:
    handlers = load_handlers([{"name": "commissaire.storage.sqlite", "path": ":memory:"}])
    assert isinstance(handlers, HandlerSet)
    (store,) = handlers.all()
    store.ping()
    handlers.close()
    with pytest.raises(errors.StoreUnavailable, match="closed"):
        store.ping()
