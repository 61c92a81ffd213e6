"""Records over store handlers: typed reads, sealed secrets, atomic changes.

Every change is a read-modify-write: read the records involved with their
revisions, compute the new state, and commit it as one transaction that only
applies if none of them changed meanwhile; on a race, read again and retry.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol, TypeVar, overload

from commissaire import errors
from commissaire.models import Model, model_class
from commissaire.storage.base import ABSENT, StoreHandler, Txn
from commissaire_service.storage.sealing import Box, seal, unseal

T = TypeVar("T")
M = TypeVar("M", bound=Model)
RETRIES = 20


class _Raced(Exception):
    """A commit found a record changed since it was read."""


def settled(what: str, attempt: Callable[[], T], again_on: type[Exception]) -> T:
    """`attempt()` (reads, then a change that holds only if they still do), run
    again while it raises `again_on`: at most RETRIES times, then Conflict. The
    one retry loop of the storage layer."""
    for _ in range(RETRIES):
        try:
            return attempt()
        except again_on:
            continue
    raise errors.Conflict(f"{what} changed concurrently too often; try again")


class Handlers(Protocol):
    """The configured store handlers (commissaire.storage.registry.HandlerSet)."""

    def for_model(self, kind: str, source: str = "") -> StoreHandler: ...

    def all(self) -> list[StoreHandler]: ...


logger = logging.getLogger(__name__)


class Current(dict[tuple[str, str], Model | None]):
    """The records a change read, by (kind, key); None where absent."""

    def of(self, cls: type[M], key: str) -> M | None:
        """The record of this class, typed (it must have been read)."""
        record = self[(cls.kind, key)]
        if record is not None and not isinstance(record, cls):
            raise TypeError(f"{cls.kind} {key!r} was read as {type(record).__name__}")
        return record


def _resolve(kind: str | type[M]) -> type[Model]:
    return model_class(kind) if isinstance(kind, str) else kind


class Snapshot:
    """Records read for one change, and the change to make to them."""

    def __init__(self) -> None:
        self.read: dict[tuple[str, str], tuple[StoreHandler, Model | None, int]] = {}
        self.puts: list[Model] = []
        self.deletes: list[Model] = []

    def put(self, record: Model) -> None:
        self.puts.append(record)

    def delete(self, record: Model) -> None:
        self.deletes.append(record)


class Repository:
    """Typed access to records kept by the configured handlers."""

    def __init__(self, handlers: Handlers, box: Box, accept_format_1: bool = True) -> None:
        """`accept_format_1`: open secrets sealed by the previous version (not bound to
        their incarnation); turn off once the re-encrypt command has upgraded them."""
        self.handlers = handlers
        self.box = box
        self.accept_format_1 = accept_format_1

    def _handler(self, kind: str, source: str = "") -> StoreHandler:
        return self.handlers.for_model(kind, source)

    @staticmethod
    def _store_key(cls: type[Model], key: str) -> str:
        return f"{cls.collection}/{key}"

    def _decode(self, cls: type[M], key: str, value: dict[str, Any]) -> M:
        return cls.from_dict(unseal(self.box, cls.kind, key, value, self.accept_format_1))

    def _locate(self, kind: str, key: str, source: str) -> StoreHandler:
        """The handler holding a record: its source's, else the first that has it."""
        if source or kind != "Host":
            return self._handler(kind, source)
        handlers = self._handlers_of(kind)
        if len(handlers) > 1:
            store_key = self._store_key(model_class(kind), key)
            for handler in handlers:
                if handler.get(store_key) is not None:
                    return handler
        return handlers[0]

    @overload
    def get(self, kind: type[M], key: str, source: str = "") -> M | None: ...
    @overload
    def get(self, kind: str, key: str, source: str = "") -> Model | None: ...

    def get(self, kind: str | type[Model], key: str, source: str = "") -> Model | None:
        """The record of this class (or kind name) and key, None if absent."""
        cls = _resolve(kind)
        item = self._locate(cls.kind, key, source).get(self._store_key(cls, key))
        return None if item is None else self._decode(cls, key, item.value)

    def require(self, cls: type[M], key: str, source: str = "") -> M:
        record = self.get(cls, key, source)
        if record is None:
            raise errors.NotFound(f"{_label(cls.kind)} {key!r} does not exist")
        return record

    def list_all(self, cls: type[M]) -> list[M]:
        kind = cls.kind
        prefix = f"{cls.collection}/"
        records: dict[str, M] = {}
        for handler in self._handlers_of(kind):
            for item in handler.list(prefix):
                key = item.key[len(prefix):]
                if "/" not in key and key not in records:
                    records[key] = self._decode(cls, key, item.value)
        return [records[k] for k in sorted(records)]

    def _handlers_of(self, kind: str) -> list[StoreHandler]:
        seen: list[StoreHandler] = []
        default = self._handler(kind)
        seen.append(default)
        if kind == "Host":
            for handler in self.handlers.all():
                if handler not in seen:
                    seen.append(handler)
        return seen

    def change(self, keys: list[tuple[str, str, str]],
               mutate: Callable[[Current, Snapshot], T],
               opaque: Collection[tuple[str, str]] = ()) -> T:
        """Read (kind, key, source) records, let `mutate` decide, commit atomically.

        `mutate(current, snapshot)` gets the records (None where absent), records
        puts/deletes on the snapshot and returns the call's result. It may raise
        to refuse the change; then nothing is written. Records named in `opaque`
        (kind, key) are not decoded (no secret opened): mutate gets a stand-in
        holding only the key, enough to delete a record whose secrets do not open.
        """
        def attempt() -> T:
            snapshot = Snapshot()
            current = Current()
            for kind, key, source in keys:
                cls = model_class(kind)
                handler = self._locate(kind, key, source)
                item = handler.get(self._store_key(cls, key))
                if item is not None and (kind, key) in opaque:
                    record: Model | None = cls.from_dict({cls.key_field: key})
                else:
                    record = None if item is None else self._decode(cls, key, item.value)
                snapshot.read[(kind, key)] = (handler, record, ABSENT if item is None else item.revision)
                current[(kind, key)] = record
            result = mutate(current, snapshot)
            if not self._commit(snapshot):
                logger.debug("concurrent change to %s; retrying", keys)
                raise _Raced()
            return result

        return settled("the records", attempt, _Raced)

    def _commit(self, snapshot: Snapshot) -> bool:
        txns: dict[int, tuple[StoreHandler, Txn]] = {}

        def txn_for(handler: StoreHandler) -> Txn:
            return txns.setdefault(id(handler), (handler, Txn()))[1]

        for (kind, key), (handler, _record, revision) in snapshot.read.items():
            txn_for(handler).compares.append((self._store_key(model_class(kind), key), revision))
        for record in snapshot.puts:
            handler = self._handler_for_record(record, snapshot)
            stored = seal(self.box, record.kind, record.key, record.to_stored_dict())
            txn_for(handler).puts.append((self._store_key(type(record), record.key), stored))
        for record in snapshot.deletes:
            handler = self._handler_for_record(record, snapshot)
            txn_for(handler).deletes.append(self._store_key(type(record), record.key))
        if not any(t.puts or t.deletes for _h, t in txns.values()):
            return True
        # One handler (the usual case) is one atomic transaction. Records split
        # over several handlers (CPD-61 sources) commit handler by handler.
        for handler, txn in txns.values():
            if not handler.commit(txn):
                return False
        return True

    def _handler_for_record(self, record: Model, snapshot: Snapshot) -> StoreHandler:
        read = snapshot.read.get((record.kind, record.key))
        if read is not None:
            return read[0]
        return self._handler(record.kind, getattr(record, "source", "") or "")


def _label(kind: str) -> str:
    return {
        "Host": "host", "HostCreds": "credentials of host", "Cluster": "cluster",
        "Network": "network", "ContainerManagerConfig": "container manager",
        "ClusterRestart": "restart of cluster", "ClusterUpgrade": "upgrade of cluster",
        "ClusterDeploy": "deploy of cluster",
    }.get(kind, kind)
