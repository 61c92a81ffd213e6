"""SqliteStoreHandler: the shared store contract, plus what only a file store has."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commissaire import errors
from commissaire.storage.base import ABSENT, Txn
from commissaire.storage.sqlite import SqliteStoreHandler
from tests.support.store_contract import StoreContract, increment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def handlers() -> Iterator[list[SqliteStoreHandler]]:
    made: list[SqliteStoreHandler] = []
    yield made
    for handler in made:
        handler.close()


class TestSqliteFileContract(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path, handlers: list[SqliteStoreHandler]) -> Any:
        def make(prefix: str) -> SqliteStoreHandler:
            handlers.append(SqliteStoreHandler(str(tmp_path / "store.db"), prefix=prefix))
            return handlers[-1]
        return make


class TestSqliteMemoryContract(StoreContract):
    @pytest.fixture
    def make_store(self, handlers: list[SqliteStoreHandler]) -> Any:
        def make(prefix: str) -> SqliteStoreHandler:
            handlers.append(SqliteStoreHandler(":memory:", prefix=prefix))
            return handlers[-1]
        return make

    # Each ":memory:" handler has a database of its own: no shared keyspace to split.
    test_prefixes_keep_stores_apart = None  # type: ignore[assignment]


def test_memory_handlers_do_not_share_data() -> None:
    one, two = SqliteStoreHandler(":memory:"), SqliteStoreHandler(":memory:")
    assert one.commit(Txn(puts=[("a", {})]))
    assert two.get("a") is None


def test_first_use_from_racing_threads_is_not_locked(tmp_path: Path) -> None:
    """Fresh files opened by two threads at once: the WAL switch once answered 'locked'."""
    failures: list[BaseException] = []
    for n in range(100):
        store = SqliteStoreHandler(str(tmp_path / f"s{n}.db"))
        start = threading.Barrier(2)

        def work(s: SqliteStoreHandler = store, b: threading.Barrier = start) -> None:
            try:
                b.wait()
                increment(s, "counter")
            except BaseException as exc:  # surfaced by the assert below
                failures.append(exc)

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        store.close()
    assert failures == []


def test_store_revision_counts_every_change(tmp_path: Path) -> None:
    store = SqliteStoreHandler(str(tmp_path / "s.db"))
    assert store.commit(Txn(puts=[("a", {})]))
    assert store.commit(Txn(puts=[("b", {})]))
    assert store.commit(Txn(deletes=["nothing"]))  # no change, no new revision
    assert store.commit(Txn(puts=[("c", {})]))
    assert [i.revision for i in store.list("")] == [1, 2, 3]
    store.close()


def test_data_survives_reopening_and_is_json_text(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SqliteStoreHandler(path, prefix="/p/")
    assert store.commit(Txn(puts=[("hosts/a", {"address": "a"})]))
    store.close()
    reopened = SqliteStoreHandler(path, prefix="/p/")
    item = reopened.get("hosts/a")
    assert item is not None and item.value == {"address": "a"} and item.revision == 1
    reopened.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT key, value FROM kv").fetchall() == \
            [("/p/hosts/a", '{"address":"a"}')]
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_expired_lease_purge_is_a_change(tmp_path: Path) -> None:
    store = SqliteStoreHandler(str(tmp_path / "s.db"))
    lease = store.lease_grant(1)
    assert store.commit(Txn(puts=[("leased", {})]), lease=lease)
    with sqlite3.connect(str(tmp_path / "s.db")) as raw:  # expire it without sleeping
        raw.execute("UPDATE leases SET expires = 0")
    assert store.get("leased") is None
    assert store.commit(Txn(puts=[("next", {})]))
    assert store.get("next").revision == 3  # type: ignore[union-attr]  # 1 put, 2 purge, 3 put
    store.close()


def test_unopenable_path_is_store_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "missing-dir" / "s.db")
    store = SqliteStoreHandler(path)
    with pytest.raises(errors.StoreUnavailable, match="missing-dir"):
        store.ping()
    with pytest.raises(errors.StoreUnavailable, match="missing-dir"):
        store.get("a")


def test_closed_handler_is_store_unavailable() -> None:
    store = SqliteStoreHandler(":memory:")
    store.close()
    with pytest.raises(errors.StoreUnavailable, match="closed"):
        store.get("a")


def test_lease_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="TTL"):
        SqliteStoreHandler(":memory:").lease_grant(0)


def test_processes_sharing_a_file_lose_no_update(tmp_path: Path) -> None:
    path, go = str(tmp_path / "shared.db"), tmp_path / "go"
    rounds, processes = 150, 3
    script = textwrap.dedent(f"""
        import os, time
        from commissaire.storage.sqlite import SqliteStoreHandler
        from tests.support.store_contract import increment
        store = SqliteStoreHandler({path!r})
        store.ping()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        for _ in range({rounds}):
            increment(store, "counter")
        store.close()
    """)
    children = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
                for _ in range(processes)]
    try:
        store = SqliteStoreHandler(path)
        store.ping()
        time.sleep(1.0)  # let the children import and open the file
        go.touch()
        for _ in range(rounds):
            increment(store, "counter")
        for child in children:
            assert child.wait(120) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    item = store.get("counter")
    assert item is not None and item.value == {"n": rounds * (processes + 1)}
    assert store.commit(Txn(compares=[("counter", item.revision)], deletes=["counter"]))
    assert store.commit(Txn(compares=[("counter", ABSENT)]))
    store.close()
