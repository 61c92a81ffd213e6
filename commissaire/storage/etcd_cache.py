"""A local copy of every key under a handler's prefix, kept current by an etcd watch.

Reads of the storage service (every GET of the API) are served from memory
instead of a round trip to etcd. Writes still go to etcd as transactions that
compare mod_revisions, so a stale copy can never cause a lost update: the
transaction fails, the keys it compared are re-read from etcd into the copy, and
the read-modify-write retries. This process's own commits are applied to the copy
at once (read-your-writes); other processes' commits arrive through the watch
within milliseconds. While the watch is down (etcd restarting, compaction), reads
go to etcd directly and fail as they would without the cache.
"""
from __future__ import annotations

import bisect
import json
import logging
import threading
from collections.abc import Callable

from commissaire.storage.base import Item

logger = logging.getLogger(__name__)

#: get() answer meaning "not known here; ask etcd".
MISS = object()


class WatchedCache:
    def __init__(self, load: Callable[[], tuple[int, list[Item]]],
                 stream: Callable[[int, Callable[[], None], Callable[[Item | str, int], None]],
                                  None],
                 interrupt: Callable[[], None]) -> None:
        """`load()` → (revision, every item). `stream(start_revision, on_created,
        on_change)` blocks while the watch lasts, calling on_change(item, revision),
        or on_change(key, revision) for a deletion; `interrupt()` ends it."""
        self._load = load
        self._stream = stream
        self._interrupt = interrupt
        self._lock = threading.Lock()
        # key → (JSON text, revision); None is a deletion at that revision. Text,
        # not objects: every read decodes its own copy, so a caller changing what
        # it read (a read-modify-write) can never change the copy.
        self._entries: dict[str, tuple[str | None, int]] = {}
        self._keys: list[str] = []  # sorted keys with a live item
        self._live = threading.Event()
        self._stopping = threading.Event()
        self._resync = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-watch-cache", daemon=True)
        self._thread.start()

    @property
    def live(self) -> bool:
        return self._live.is_set()

    def wait_live(self, timeout: float) -> bool:
        return self._live.wait(timeout)

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Item | None | object:
        if not self._live.is_set():
            return MISS
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] is None:
            return None
        return Item(key, json.loads(entry[0]), entry[1])

    def list(self, prefix: str) -> list[Item] | None:
        """Items under `prefix` sorted by key; None when the copy is not live."""
        if not self._live.is_set():
            return None
        with self._lock:
            start = bisect.bisect_left(self._keys, prefix)
            found = []
            for key in self._keys[start:]:
                if not key.startswith(prefix):
                    break
                text, revision = self._entries[key]
                if text is not None:
                    found.append((key, text, revision))
        return [Item(key, json.loads(text), revision) for key, text, revision in found]

    # -- updates -------------------------------------------------------------

    def apply(self, key: str, item: Item | None, revision: int) -> None:
        """Record `key` as `item` (None: deleted) at `revision`, unless we know newer."""
        with self._lock:
            self._apply_locked(key, item, revision)

    def _apply_locked(self, key: str, item: Item | None, revision: int) -> None:
        current = self._entries.get(key)
        if current is not None and current[1] > revision:
            return
        had = current is not None and current[0] is not None
        self._entries[key] = (None if item is None else json.dumps(item.value), revision)
        if item is not None and not had:
            bisect.insort(self._keys, key)
        elif item is None and had:
            index = bisect.bisect_left(self._keys, key)
            if index < len(self._keys) and self._keys[index] == key:
                del self._keys[index]

    def _on_change(self, change: Item | str, revision: int) -> None:
        if isinstance(change, str):
            self.apply(change, None, revision)
        else:
            self.apply(change.key, change, revision)

    # -- the watch ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                revision, items = self._load()
                with self._lock:
                    self._entries = {i.key: (json.dumps(i.value), i.revision) for i in items}
                    self._keys = sorted(self._entries)
                self._stream(revision + 1, self._live.set, self._on_change)
                if not self._stopping.is_set() and not self._resync.is_set():
                    logger.warning("etcd watch ended; reloading")
            except Exception as exc:
                if not self._stopping.is_set():
                    logger.warning("etcd watch failed (%s); reads go to etcd until it is "
                                   "back", exc or type(exc).__name__)
            finally:
                self._live.clear()
            if self._resync.is_set():
                self._resync.clear()
                continue
            self._stopping.wait(1.0)

    def resync(self) -> None:
        """Forget the copy now (reads go to etcd) and reload it: for changes etcd
        makes that we cannot apply ourselves, like keys deleted by a lease revoke."""
        self._resync.set()
        self._live.clear()
        try:
            self._interrupt()
        except Exception:  # noqa: BLE001  (the stream may already be gone)
            logger.debug("interrupting the etcd watch failed", exc_info=True)

    def close(self) -> None:
        self._stopping.set()
        self._live.clear()
        try:
            self._interrupt()
        except Exception:  # noqa: BLE001  (closing a dead stream)
            logger.debug("interrupting the etcd watch failed", exc_info=True)
