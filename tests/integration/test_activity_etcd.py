"""The activity stream on a real etcd: key-range reads answered by etcd itself
(sorted, limited, counted), and retention by count and by age on write."""
from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterator

import pytest

from commissaire import activity
from commissaire.storage.base import Txn
from commissaire.storage.etcd import EtcdStoreHandler
from commissaire_service.storage.activity import PRUNE_BATCH, ActivityLog, Retention
from tests.support.servers import EtcdServer
from tests.unit.fakes import HandlerSet

pytestmark = pytest.mark.integration

T0 = _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> _dt.datetime:
        return self.now


@pytest.fixture(params=[False, True], ids=["direct", "watch-cache"])
def store(etcd_server: EtcdServer, request: pytest.FixtureRequest) -> Iterator[EtcdStoreHandler]:
    handler = EtcdStoreHandler(etcd_server.url, prefix=f"/activity-{uuid.uuid4().hex}/",
                               watch_cache=request.param, **etcd_server.tls_options)
    yield handler
    handler.close()


def entry(moment: _dt.datetime, key: str = "c1", actor: str = "alice") -> activity.Event:
    return activity.make("create", "cluster", key, actor={"name": actor, "method": "basic"},
                         moment=moment)


def stored(store: EtcdStoreHandler) -> list[str]:
    return [item.key for item in store.scan("events/", "events0")]


def test_etcd_answers_key_ranges(store: EtcdStoreHandler) -> None:
    names = [f"events/{i:03d}" for i in range(10)] + ["eventsX/1", "event/1"]
    assert store.commit(Txn(puts=[(k, {"k": k}) for k in names]))
    assert stored(store) == names[:10]
    assert [i.key for i in store.scan("events/", "events0", limit=2, newest_first=True)] == [
        "events/009", "events/008"]
    assert [i.value for i in store.scan("events/004", "events/006")] == [
        {"k": "events/004"}, {"k": "events/005"}]
    assert store.count("events/", "events0") == 10
    assert store.count("events/005", "events/005") == 0


def test_retention_by_count_on_etcd(store: EtcdStoreHandler) -> None:
    clock = Clock()
    log = ActivityLog(HandlerSet(store), Retention(max_count=4), now=clock)
    made = []
    for i in range(9):
        clock.now = T0 + _dt.timedelta(seconds=i)
        made.append(entry(clock.now, key=f"c{i}"))
        log.record(made[-1])
    assert stored(store) == [f"events/{e.id}" for e in made[-4:]]
    page = log.query(limit=2)
    assert page.total == 4 and [e.id for e in page.items] == [made[8].id, made[7].id]


def test_retention_by_age_on_etcd_in_bounded_batches(store: EtcdStoreHandler) -> None:
    clock = Clock()
    log = ActivityLog(HandlerSet(store), Retention(max_age=60), now=clock)
    backlog = PRUNE_BATCH + 20
    for i in range(backlog):
        log.record(entry(T0 + _dt.timedelta(milliseconds=i)))
    clock.now = T0 + _dt.timedelta(hours=1)
    assert log.query().total == 0  # all too old: hidden at once
    log.record(entry(clock.now, actor="bob"))
    assert len(stored(store)) == backlog + 1 - PRUNE_BATCH  # one batch per write
    log.record(entry(clock.now, actor="bob"))
    assert len(stored(store)) == 2
    assert [e.actor["name"] for e in log.query(actor="bob").items] == ["bob", "bob"]
