"""The activity stream in the store: key-range reads, and retention by count and by
age enforced on write in bounded batches, on SQLite (and the dict fake, which
uses the StoreHandler's default range reads); etcd: tests/integration."""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commissaire import activity
from commissaire.activity import Event
from commissaire.config import ConfigError
from commissaire.storage.base import StoreHandler, Txn
from commissaire.storage.sqlite import SqliteStoreHandler
from commissaire_service.builders import check_services_config
from commissaire_service.settings import StorageSettings
from commissaire_service.storage.activity import PRUNE_BATCH, ActivityLog, Retention
from tests.unit.fakes import DictStore, HandlerSet

T0 = _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> _dt.datetime:
        return self.now


@pytest.fixture(params=["sqlite", "dict"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StoreHandler]:
    made: list[StoreHandler] = []

    def make() -> StoreHandler:
        store: StoreHandler = (SqliteStoreHandler(str(tmp_path / f"db{len(made)}.sqlite"))
                               if request.param == "sqlite" else DictStore())
        made.append(store)
        return store
    yield make  # type: ignore[misc]
    for store in made:
        store.close()


def entry(moment: _dt.datetime, action: str = "create", key: str = "c1",
          actor: str = "alice") -> Event:
    return activity.make(action, "cluster", key, actor={"name": actor, "method": "basic"},
                         moment=moment)


def keys(store: StoreHandler) -> list[str]:
    return [item.key for item in store.list("events/")]


def test_scan_and_count_read_a_key_range_in_either_order(
        make_store: Callable[[], StoreHandler]) -> None:
    store = make_store()
    names = [f"events/{i:03d}" for i in range(10)] + ["eventsX/1", "event/1", "hosts/a"]
    assert store.commit(Txn(puts=[(k, {"k": k}) for k in names]))
    assert [i.key for i in store.scan("events/", "events0")] == names[:10]
    assert [i.key for i in store.scan("events/002", "events/005")] == names[2:5]
    assert [i.key for i in store.scan("events/", "events0", limit=3, newest_first=True)] == [
        "events/009", "events/008", "events/007"]
    assert store.scan("events/", "events0", limit=2)[1].value == {"k": "events/001"}
    assert store.count("events/", "events0") == 10
    assert store.count("events/003", "events/003") == 0


def test_the_count_is_bounded_oldest_first(make_store: Callable[[], StoreHandler]) -> None:
    store, clock = make_store(), Clock()
    log = ActivityLog(HandlerSet(store), Retention(max_count=5), now=clock)
    made = []
    for i in range(12):
        clock.now = T0 + _dt.timedelta(seconds=i)
        made.append(entry(clock.now, key=f"c{i}"))
        log.record(made[-1])
        assert len(keys(store)) == min(i + 1, 5)
    assert keys(store) == [f"events/{e.id}" for e in made[-5:]]
    assert log.query().total == 5


def test_the_age_is_bounded_on_write_and_on_read(make_store: Callable[[], StoreHandler]) -> None:
    store, clock = make_store(), Clock()
    log = ActivityLog(HandlerSet(store), Retention(max_age=60), now=clock)
    for i in range(3):
        log.record(entry(T0 + _dt.timedelta(seconds=i)))
    clock.now = T0 + _dt.timedelta(seconds=61.5)  # the first two are older than 60 s
    assert [e.at for e in log.query(newest_first=False).items] == [
        activity.iso(T0 + _dt.timedelta(seconds=2))]  # hidden before any pruning
    assert len(keys(store)) == 3
    log.record(entry(clock.now))
    assert len(keys(store)) == 2  # pruned by the write
    clock.now = T0 + _dt.timedelta(days=1)
    log.record(entry(clock.now))
    assert len(keys(store)) == 1


def test_pruning_is_bounded_per_write(make_store: Callable[[], StoreHandler]) -> None:
    store, clock = make_store(), Clock()
    backlog = PRUNE_BATCH * 2 + 10
    loose = ActivityLog(HandlerSet(store), Retention(), now=clock)
    for i in range(backlog):
        loose.record(entry(T0 + _dt.timedelta(microseconds=i)))
    tight = ActivityLog(HandlerSet(store), Retention(max_count=5), now=clock)
    tight.record(entry(T0 + _dt.timedelta(seconds=1)))
    assert len(keys(store)) == backlog + 1 - PRUNE_BATCH
    tight.record(entry(T0 + _dt.timedelta(seconds=2)))
    tight.record(entry(T0 + _dt.timedelta(seconds=3)))
    assert len(keys(store)) == 5  # converged: each write removes up to a batch


def test_queries_filter_and_page(make_store: Callable[[], StoreHandler]) -> None:
    store, clock = make_store(), Clock()
    log = ActivityLog(HandlerSet(store), now=clock)
    made = [entry(T0 + _dt.timedelta(seconds=i), action=("create", "delete")[i % 2],
                  key=("c1", "c2", "c1/restart")[i % 3], actor=("alice", "bob")[i % 2])
            for i in range(9)]
    for one in made:
        log.record(one)
    clock.now = T0 + _dt.timedelta(seconds=10)
    ids = [e.id for e in made]
    assert [e.id for e in log.query().items] == ids[::-1]
    assert [e.id for e in log.query(object_kind="cluster", object_key="c1",
                                    newest_first=False).items] == [
        ids[i] for i in (0, 2, 3, 5, 6, 8)]
    page = log.query(actor="bob", limit=2, offset=1)
    assert page.total == 4 and [e.id for e in page.items] == [ids[5], ids[3]]
    window = log.query(since=T0 + _dt.timedelta(seconds=2), until=T0 + _dt.timedelta(seconds=4),
                       newest_first=False)
    assert window.total == 3 and [e.id for e in window.items] == ids[2:5]
    assert log.query(action="delete", until=T0).total == 0


def test_ids_sort_by_time_and_the_bounds_follow() -> None:
    early, late = T0, T0 + _dt.timedelta(microseconds=1)
    assert activity.new_id(early) < activity.new_id(late)
    assert activity.id_floor(early) < activity.new_id(early) < activity.id_floor(late)
    assert len(activity.id_floor(_dt.datetime(9999, 1, 1, tzinfo=_dt.UTC))) == 16


def test_an_entry_is_validated_and_its_fields_redacted() -> None:
    made = activity.make("create", "containermanager", "k", fields={
        "options": {"token": "t0ken", "nested": [{"ssh_priv_key": "k3y"}]},
        "long": "x" * 5000, "many": list(range(500))})
    assert made.fields["options"] == {"token": "******", "nested": [{"ssh_priv_key": "******"}]}
    assert len(made.fields["long"]) < 600 and len(made.fields["many"]) < 60
    with pytest.raises(Exception, match="action"):
        Event.from_dict({**made.to_dict(), "action": "explode"}).validate()


@pytest.mark.parametrize(("config", "message"), [
    ({"events-max-age": 0}, "events-max-age: must be at least 1"),
    ({"events-max-count": 2.5}, "events-max-count: must be a whole number"),
])
def test_the_retention_settings(config: dict[str, Any], message: str) -> None:
    settings = StorageSettings.parse({}, "storage")
    assert (settings.events_max_age, settings.events_max_count) == (30 * 86400, 100_000)
    set_ = StorageSettings.parse({"events-max-age": 3600, "events-max-count": 10}, "storage")
    assert (set_.events_max_age, set_.events_max_count) == (3600.0, 10)
    with pytest.raises(ConfigError, match=message):
        StorageSettings.parse(config, "storage")


def test_the_all_in_one_takes_the_retention_settings_only() -> None:
    check_services_config({"storage": {"events-max-count": 50}})
    with pytest.raises(ConfigError, match="storage: storage-handlers: not a setting"):
        check_services_config({"storage": {"storage-handlers": []}})
    with pytest.raises(ConfigError, match="storage: events-max-count: must be at least 1"):
        check_services_config({"storage": {"events-max-count": 0}})
