"""The storage layer's one retry loop (repository.settled): a read-then-change
spoiled by concurrent writers is tried again, a bounded number of times, then
answered with a Conflict instead of spinning for ever."""
from __future__ import annotations

import pytest

from commissaire import errors
from commissaire.storage.base import Txn
from commissaire_service.storage.repository import RETRIES, Repository, settled
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DictStore, HandlerSet, ReversibleBox


class Spoiled(Exception):
    pass


def test_an_attempt_is_repeated_until_it_holds() -> None:
    tries: list[int] = []

    def attempt() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise Spoiled()
        return "done"

    assert settled("x", attempt, Spoiled) == "done" and len(tries) == 3


def test_attempts_are_bounded() -> None:
    tries: list[int] = []

    def attempt() -> str:
        tries.append(1)
        raise Spoiled()

    with pytest.raises(errors.Conflict, match="^cluster 'c1' changed concurrently too often"):
        settled("cluster 'c1'", attempt, Spoiled)
    assert len(tries) == RETRIES


def test_other_errors_are_not_retried() -> None:
    tries: list[int] = []

    def attempt() -> str:
        tries.append(1)
        raise errors.NotFound("gone")

    with pytest.raises(errors.NotFound):
        settled("x", attempt, Spoiled)
    assert len(tries) == 1


class ForeverRacing(DictStore):
    """A store where another writer always commits first."""

    def commit(self, txn: Txn, lease: int | None = None) -> bool:
        return False


def test_a_store_that_always_races_gives_a_conflict_not_a_hang() -> None:
    storage = StorageService(Repository(HandlerSet(ForeverRacing()), ReversibleBox()))
    with pytest.raises(errors.Conflict, match="changed concurrently too often"):
        storage.create("Network", {"name": "n1", "type": "flannel_etcd"})
