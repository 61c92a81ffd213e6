"""The interface every storage handler implements.

Handlers store JSON documents under string keys (relative to the handler's
prefix) and expose each document's revision, so callers can do read-modify-write
as one atomic transaction that fails if anything changed in between.
Values reach a handler already encrypted where they are secret: handlers never
see plaintext credentials.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

# Revision meaning "the key must not exist" in a Txn compare.
ABSENT = 0


@dataclasses.dataclass
class Txn:
    """An atomic change: applied whole if every compare holds, else not at all."""

    # (key, revision): the key's current revision must equal this (ABSENT: no key).
    compares: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    puts: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    deletes: list[str] = dataclasses.field(default_factory=list)

    def check(self) -> None:
        """Refuse a txn changing a key twice: etcd rejects it, so every handler does."""
        seen: set[str] = set()
        for key in [key for key, _ in self.puts] + list(self.deletes):
            if key in seen:
                raise ValueError(f"transaction changes key {key!r} more than once")
            seen.add(key)

    def failed_compare(self, revision_of: Callable[[str], int]) -> str | None:
        """The first key whose current revision (`revision_of(key)`, ABSENT when
        there is none) is not the one the txn expects; None when all hold."""
        return next((key for key, rev in self.compares if revision_of(key) != rev), None)


@dataclasses.dataclass
class Item:
    key: str
    value: dict[str, Any]
    revision: int


class StoreHandler(abc.ABC):
    """A store of JSON documents with per-key revisions and transactions."""

    #: Short name used in a Host's `source` (e.g. "etcd" for commissaire.storage.etcd).
    short_name: str = ""

    # -- key ranges: the activity stream's time-ordered keys ----------------------

    def scan(self, start: str, end: str, *, limit: int = 0,
             newest_first: bool = False) -> list[Item]:
        """Documents whose key is in [start, end), sorted by key (descending with
        `newest_first`), at most `limit` (0: all). Handlers override this with a
        query that reads only those; this default reads their common prefix."""
        found = [item for item in self.list(_common_prefix(start, end))
                 if start <= item.key < end]
        if newest_first:
            found.reverse()
        return found[:limit] if limit else found

    def count(self, start: str, end: str) -> int:
        """How many keys are in [start, end)."""
        return len(self.scan(start, end))

    @abc.abstractmethod
    def get(self, key: str) -> Item | None:
        """The document at `key`, or None when there is none."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[Item]:
        """Every document whose key starts with `prefix`, sorted by key."""

    @abc.abstractmethod
    def commit(self, txn: Txn, lease: int | None = None) -> bool:
        """Apply `txn` atomically. False (and nothing changed) if a compare failed.
        With `lease`, the keys put live only as long as that lease (NotFound if it
        is gone); without, a put key is detached from any lease it had."""

    # -- leases: keys that vanish when their holder stops renewing --------------

    @abc.abstractmethod
    def lease_grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds (at least 1); its id."""

    @abc.abstractmethod
    def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease; its TTL. errors.NotFound when it expired or was revoked."""

    @abc.abstractmethod
    def lease_revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys; a lease already gone is not an error."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot be reached."""

    def close(self) -> None:  # noqa: B027  (optional hook; most handlers hold nothing)
        """Release connections."""
        return None


def _common_prefix(start: str, end: str) -> str:
    size = 0
    for a, b in zip(start, end, strict=False):
        if a != b:
            break
        size += 1
    return start[:size]
