"""The embedded store: SQLite with etcd's semantics, for the all-in-one mode.

A single store revision counts every committed change and each key keeps the
revision that last changed it, so the read-modify-write code written for etcd
works unchanged. Writers take the write lock up front (BEGIN IMMEDIATE) and
WAL mode lets readers go on meanwhile, in this process and in others.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

from commissaire import errors
from commissaire.storage.base import ABSENT, Item, StoreHandler, Txn

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value TEXT NOT NULL,
    mod_revision INTEGER NOT NULL, lease INTEGER);
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ttl INTEGER NOT NULL, expires REAL NOT NULL);
"""

# A key is visible unless its lease expired (expired keys are purged on the next write).
_LIVE = ("(kv.lease IS NULL OR EXISTS "
         "(SELECT 1 FROM leases WHERE leases.id = kv.lease AND leases.expires > ?))")


class SqliteStoreHandler(StoreHandler):
    """JSON documents in one SQLite file, with etcd-like revisions, transactions and leases.

    ":memory:" gives each handler its own database, shared by all its threads.
    """

    short_name = "sqlite"

    def __init__(self, path: str = "/var/lib/commissaire/commissaire.db",
                 prefix: str = "/commissaire/", timeout: float = 30.0) -> None:
        self.path = path
        self.prefix = prefix
        self.timeout = timeout
        self._memory = path == ":memory:"
        self._lock = threading.Lock()  # guards the pool (file) or the one connection (memory)
        self._idle: list[sqlite3.Connection] = []
        self._schema_ready = False
        self._setup_lock = threading.Lock()  # one connection sets the file up, first
        self._closed = False

    # -- connections -----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            with self._setup_lock:
                if not self._schema_ready:
                    self._set_up(conn)
                    self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """WAL mode (persistent in the file) and the schema, once per handler.

        Switching to WAL can answer "database is locked" without waiting for the busy
        timeout while another connection opens the same file, so it is retried here.
        """
        if not self._memory:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation; sqlite errors become StoreUnavailable."""
        if self._closed:
            raise errors.StoreUnavailable(f"sqlite store {self.path} is closed")
        try:
            if self._memory:
                with self._lock:
                    if not self._idle:
                        self._idle.append(self._connect())
                    yield self._idle[0]
                return
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            conn = conn or self._connect()
            try:
                yield conn
            finally:
                self._release(conn)
        except sqlite3.Error as exc:
            raise errors.StoreUnavailable(f"sqlite store {self.path} failed: {exc}") from exc

    def _release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.close()  # a failed rollback: do not hand a half-done state to the next caller
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """One write transaction; rolled back on any exception."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if conn.in_transaction:  # a failed compare already rolled back
            conn.execute("COMMIT")

    # -- helpers ---------------------------------------------------------

    def _item(self, full_key: str, text: str, revision: int) -> Item:
        try:
            value = json.loads(text)
        except ValueError:
            raise errors.StoreUnavailable(
                f"sqlite key {full_key!r} in {self.path} does not hold a JSON document") from None
        return Item(full_key[len(self.prefix):], value, revision)

    @staticmethod
    def _revision(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()[0])

    @staticmethod
    def _set_revision(conn: sqlite3.Connection, revision: int) -> None:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))

    def _purge_expired(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete expired leases and their keys, as etcd does, as one change."""
        expired = [row[0] for row in
                   conn.execute("SELECT id FROM leases WHERE expires <= ?", (now,))]
        if not expired:
            return
        marks = ",".join("?" * len(expired))
        deleted = conn.execute(f"DELETE FROM kv WHERE lease IN ({marks})", expired).rowcount
        conn.execute(f"DELETE FROM leases WHERE id IN ({marks})", expired)
        if deleted:
            self._set_revision(conn, self._revision(conn) + 1)
        logger.debug("sqlite store %s: %d leases expired, %d keys gone",
                     self.path, len(expired), deleted)

    # -- StoreHandler ----------------------------------------------------

    def scan(self, start: str, end: str, *, limit: int = 0,
             newest_first: bool = False) -> list[Item]:
        """One indexed query over the key range (the primary key orders it)."""
        order = "DESC" if newest_first else "ASC"
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT key, value, mod_revision FROM kv WHERE key >= ? AND key < ? "
                f"AND {_LIVE} ORDER BY key {order} LIMIT ?",
                (self.prefix + start, self.prefix + end, time.time(),
                 limit if limit > 0 else -1)).fetchall()
        return [self._item(*row) for row in rows]

    def count(self, start: str, end: str) -> int:
        with self._conn() as conn:
            row = conn.execute(f"SELECT count(*) FROM kv WHERE key >= ? AND key < ? AND {_LIVE}",
                               (self.prefix + start, self.prefix + end, time.time())).fetchone()
        return int(row[0])

    def get(self, key: str) -> Item | None:
        full = self.prefix + key
        with self._conn() as conn:
            row = conn.execute(f"SELECT value, mod_revision FROM kv WHERE key = ? AND {_LIVE}",
                               (full, time.time())).fetchone()
        return None if row is None else self._item(full, row[0], row[1])

    def list(self, prefix: str) -> list[Item]:
        full = self.prefix + prefix
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT key, value, mod_revision FROM kv WHERE key >= ? "
                f"AND substr(key, 1, ?) = ? AND {_LIVE} ORDER BY key",
                (full, len(full), full, time.time())).fetchall()
        return [self._item(*row) for row in rows]

    def commit(self, txn: Txn, lease: int | None = None) -> bool:
        """Check every compare and apply every put and delete in one SQLite transaction."""
        txn.check()
        with self._conn() as conn, self._write(conn):
            now = time.time()
            self._purge_expired(conn, now)
            def revision_of(key: str) -> int:
                row = conn.execute("SELECT mod_revision FROM kv WHERE key = ?",
                                   (self.prefix + key,)).fetchone()
                return ABSENT if row is None else int(row[0])

            failed = txn.failed_compare(revision_of)
            if failed is not None:
                logger.debug("sqlite txn compare failed on %s", failed)
                conn.execute("ROLLBACK")
                return False
            if lease is not None and conn.execute(
                    "SELECT 1 FROM leases WHERE id = ? AND expires > ?",
                    (lease, now)).fetchone() is None:
                raise errors.NotFound(f"sqlite store {self.path}: lease {lease} not found "
                                      "(it expired or was revoked)")
            revision = self._revision(conn) + 1
            changed = bool(txn.puts)
            for key in txn.deletes:
                changed |= conn.execute("DELETE FROM kv WHERE key = ?",
                                        (self.prefix + key,)).rowcount > 0
            for key, value in txn.puts:
                conn.execute(
                    "INSERT INTO kv (key, value, mod_revision, lease) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "mod_revision = excluded.mod_revision, lease = excluded.lease",
                    (self.prefix + key, json.dumps(value, sort_keys=True, separators=(",", ":")), revision, lease))
            if changed:
                self._set_revision(conn, revision)
        return True

    def ping(self) -> None:
        with self._conn() as conn:
            self._revision(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- leases ----------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its id."""
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 second, not {ttl}")
        with self._conn() as conn:
            cursor = conn.execute("INSERT INTO leases (ttl, expires) VALUES (?, ?)",
                                  (int(ttl), time.time() + ttl))
            return int(cursor.lastrowid or 0)

    def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease; its TTL. NotFound when it already expired."""
        now = time.time()
        with self._conn() as conn:
            row = conn.execute("UPDATE leases SET expires = ? + ttl WHERE id = ? AND expires > ? "
                               "RETURNING ttl", (now, lease_id, now)).fetchone()
        if row is None:
            raise errors.NotFound(f"sqlite store {self.path}: lease {lease_id} expired "
                                  "or was revoked")
        return int(row[0])

    def lease_revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys; a lease already gone is not an error."""
        with self._conn() as conn, self._write(conn):
            deleted = conn.execute("DELETE FROM kv WHERE lease = ?", (lease_id,)).rowcount
            conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
            if deleted:
                self._set_revision(conn, self._revision(conn) + 1)


StoreHandlerClass = SqliteStoreHandler
