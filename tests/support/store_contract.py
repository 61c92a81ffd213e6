"""The behaviour every StoreHandler must share, run against each real handler.

A test module subclasses StoreContract (as a class named Test...) and provides
a `make_store` fixture: a callable taking a key prefix and returning a fresh
handler on the real backend. Handlers are interchangeable only if all pass.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from commissaire import errors
from commissaire.storage.base import ABSENT, StoreHandler, Txn

MakeStore = Callable[[str], Any]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def increment(store: StoreHandler, key: str) -> int:
    """Read-modify-write one counter until the commit wins; the attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        item = store.get(key)
        count = 0 if item is None else item.value["n"]
        rev = ABSENT if item is None else item.revision
        time.sleep(0)  # let a racing writer in between the read and the write
        if store.commit(Txn(compares=[(key, rev)], puts=[(key, {"n": count + 1})])):
            return attempts


class StoreContract:
    """Tests shared by every handler (collected through subclasses named Test*)."""

    @pytest.fixture
    def store(self, make_store: MakeStore) -> Any:
        return make_store(f"/test-{uuid.uuid4().hex[:8]}/")

    def test_get_missing_is_none(self, store: StoreHandler) -> None:
        assert store.get("hosts/nothing") is None
        assert store.list("hosts/") == []

    def test_create_then_get(self, store: StoreHandler) -> None:
        value = {"address": "10.0.0.1", "nested": {"list": [1, 2.5, None, True]}, "u": "é✓"}
        assert store.commit(Txn(compares=[("hosts/10.0.0.1", ABSENT)],
                                puts=[("hosts/10.0.0.1", value)]))
        item = store.get("hosts/10.0.0.1")
        assert item is not None
        assert (item.key, item.value) == ("hosts/10.0.0.1", value)
        assert item.revision > 0

    def test_absent_compare_fails_when_key_exists(self, store: StoreHandler) -> None:
        assert store.commit(Txn(puts=[("hosts/a", {"v": 1})]))
        before = store.get("hosts/a")
        assert not store.commit(Txn(compares=[("hosts/a", ABSENT)],
                                    puts=[("hosts/a", {"v": 2}), ("hosts/b", {"v": 2})]))
        assert store.get("hosts/a") == before
        assert store.get("hosts/b") is None

    def test_stale_revision_fails_and_changes_nothing(self, store: StoreHandler) -> None:
        assert store.commit(Txn(puts=[("hosts/a", {"v": 1}), ("hosts/b", {"v": 1})]))
        stale = store.get("hosts/a")
        assert stale is not None
        assert store.commit(Txn(compares=[("hosts/a", stale.revision)],
                                puts=[("hosts/a", {"v": 2})]))
        current_a, current_b = store.get("hosts/a"), store.get("hosts/b")
        assert not store.commit(Txn(compares=[("hosts/a", stale.revision)],
                                    puts=[("hosts/a", {"v": 3}), ("hosts/c", {"v": 3})],
                                    deletes=["hosts/b"]))
        assert store.get("hosts/a") == current_a
        assert store.get("hosts/b") == current_b
        assert store.get("hosts/c") is None

    def test_one_failing_compare_among_several_fails_all(self, store: StoreHandler) -> None:
        assert store.commit(Txn(puts=[("a", {}), ("b", {})]))
        a, b = store.get("a"), store.get("b")
        assert a is not None and b is not None
        assert not store.commit(Txn(compares=[("a", a.revision), ("b", b.revision + 100)],
                                    puts=[("a", {"changed": True})]))
        assert store.get("a") == a
        assert store.commit(Txn(compares=[("a", a.revision), ("b", b.revision)],
                                puts=[("a", {"changed": True})]))

    def test_revisions_follow_changes(self, store: StoreHandler) -> None:
        assert store.commit(Txn(puts=[("x", {"v": 1})]))
        first = store.get("x")
        assert store.commit(Txn(puts=[("y", {"v": 1}), ("z", {"v": 1})]))
        y, z = store.get("y"), store.get("z")
        assert first is not None and y is not None and z is not None
        assert y.revision == z.revision > first.revision  # one txn, one revision
        assert store.get("x") == first  # untouched keys keep their revision
        assert store.commit(Txn(compares=[("x", first.revision)], puts=[("x", {"v": 2})]))
        second = store.get("x")
        assert second is not None and second.revision > y.revision

    def test_delete_then_absent_again(self, store: StoreHandler) -> None:
        assert store.commit(Txn(puts=[("hosts/a", {"v": 1})]))
        item = store.get("hosts/a")
        assert item is not None
        assert store.commit(Txn(compares=[("hosts/a", item.revision)], deletes=["hosts/a"]))
        assert store.get("hosts/a") is None
        assert store.list("hosts/") == []
        assert store.commit(Txn(compares=[("hosts/a", ABSENT)], puts=[("hosts/a", {"v": 9})]))
        again = store.get("hosts/a")
        assert again is not None and again.revision > item.revision

    def test_deleting_a_missing_key_succeeds(self, store: StoreHandler) -> None:
        assert store.commit(Txn(deletes=["hosts/never"]))
        assert store.get("hosts/never") is None

    def test_list_is_sorted_and_limited_to_prefix(self, store: StoreHandler) -> None:
        keys = ["hosts/10.0.0.2", "hosts/10.0.0.10", "hosts/10.0.0.1", "hostsx/1",
                "clusters/c", "hosts/é"]
        assert store.commit(Txn(puts=[(k, {"k": k}) for k in keys]))
        listed = store.list("hosts/")
        assert [i.key for i in listed] == ["hosts/10.0.0.1", "hosts/10.0.0.10",
                                           "hosts/10.0.0.2", "hosts/é"]
        assert all(i.value == {"k": i.key} for i in listed)
        assert [i.key for i in store.list("")] == sorted(keys)

    def test_prefixes_keep_stores_apart(self, make_store: MakeStore) -> None:
        tag = uuid.uuid4().hex[:8]
        one, two = make_store(f"/one-{tag}/"), make_store(f"/two-{tag}/")
        assert one.commit(Txn(puts=[("hosts/a", {"in": "one"})]))
        assert two.get("hosts/a") is None
        assert two.list("") == []
        assert two.commit(Txn(compares=[("hosts/a", ABSENT)], puts=[("hosts/a", {"in": "two"})]))
        item = one.get("hosts/a")
        assert item is not None and item.value == {"in": "one"}

    def test_txn_changing_a_key_twice_is_refused(self, store: StoreHandler) -> None:
        with pytest.raises(ValueError, match="more than once"):
            store.commit(Txn(puts=[("a", {})], deletes=["a"]))
        assert store.get("a") is None

    def test_first_of_two_writers_from_one_read_wins(self, store: StoreHandler) -> None:
        assert store.commit(Txn(puts=[("counter", {"n": 0})]))
        read = store.get("counter")
        assert read is not None
        assert store.commit(Txn(compares=[("counter", read.revision)],
                                puts=[("counter", {"n": 1, "by": "first"})]))
        assert not store.commit(Txn(compares=[("counter", read.revision)],
                                    puts=[("counter", {"n": 1, "by": "second"})]))
        final = store.get("counter")
        assert final is not None and final.value == {"n": 1, "by": "first"}

    def test_racing_threads_lose_no_update(self, store: StoreHandler) -> None:
        rounds, threads = 100, 2
        start = threading.Barrier(threads)
        failures: list[BaseException] = []

        def work() -> None:
            try:
                start.wait()
                for _ in range(rounds):
                    increment(store, "counter")
            except BaseException as exc:  # surfaced by the assert below
                failures.append(exc)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert failures == []
        item = store.get("counter")
        assert item is not None and item.value["n"] == rounds * threads

    def test_ping(self, store: StoreHandler) -> None:
        store.ping()

    # -- leases ----------------------------------------------------------

    def test_lease_keys_expire(self, store: Any) -> None:
        lease = store.lease_grant(1)
        assert store.commit(Txn(puts=[("leased/a", {"v": 1})]), lease=lease)
        assert store.commit(Txn(puts=[("leased/plain", {"v": 1})]))
        assert store.get("leased/a") is not None
        assert wait_until(lambda: store.get("leased/a") is None)
        assert [i.key for i in store.list("leased/")] == ["leased/plain"]
        # Gone means absent for compares too, and the lease cannot be renewed.
        assert store.commit(Txn(compares=[("leased/a", ABSENT)], puts=[("leased/a", {"v": 2})]))
        with pytest.raises(errors.NotFound):
            store.lease_keepalive(lease)

    def test_lease_keepalive_keeps_keys(self, store: Any) -> None:
        lease = store.lease_grant(2)
        assert store.commit(Txn(puts=[("leased/a", {"v": 1})]), lease=lease)
        deadline = time.monotonic() + 3.0  # past the TTL
        while time.monotonic() < deadline:
            assert store.lease_keepalive(lease) >= 1
            assert store.get("leased/a") is not None
            time.sleep(0.3)
        assert wait_until(lambda: store.get("leased/a") is None)

    def test_lease_revoke_deletes_keys_now(self, store: Any) -> None:
        lease = store.lease_grant(60)
        assert store.commit(Txn(puts=[("leased/a", {}), ("leased/b", {})]), lease=lease)
        store.lease_revoke(lease)
        assert store.list("leased/") == []
        store.lease_revoke(lease)  # already gone: not an error
        with pytest.raises(errors.NotFound):
            store.commit(Txn(puts=[("leased/c", {})]), lease=lease)
        assert store.get("leased/c") is None

    def test_put_without_lease_detaches_key(self, store: Any) -> None:
        lease = store.lease_grant(60)
        assert store.commit(Txn(puts=[("leased/a", {"v": 1})]), lease=lease)
        assert store.commit(Txn(puts=[("leased/a", {"v": 2})]))
        store.lease_revoke(lease)
        item = store.get("leased/a")
        assert item is not None and item.value == {"v": 2}
