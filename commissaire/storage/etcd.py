"""The production store: etcd through its v3 JSON gateway (etcd3gw).

The v2 API is gone from etcd 3.6, so only v3 is used. Payloads are built here
rather than through etcd3gw's convenience methods: those encode text as latin-1
and report a failed transaction by an absent field, both easy to get wrong.
etcd3gw is used for the HTTP session, the API path and its error classes.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw import exceptions as etcd_exc

from commissaire import errors
from commissaire.storage.base import ABSENT, Item, StoreHandler, Txn
from commissaire.storage.etcd_cache import MISS, WatchedCache

logger = logging.getLogger(__name__)


def _b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str) -> bytes:
    return base64.b64decode(data)


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's prefix range)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"  # every key from `prefix` on
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _encode_value(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, sort_keys=True, separators=(",", ":")))


class EtcdStoreHandler(StoreHandler):
    """JSON documents in etcd v3; revisions are etcd's mod_revision."""

    short_name = "etcd"

    def __init__(self, server_url: str = "http://127.0.0.1:2379", prefix: str = "/commissaire/",
                 timeout: float = 5.0, certificate_path: str | None = None,
                 certificate_key_path: str | None = None,
                 certificate_ca_path: str | None = None, watch_cache: bool = False) -> None:
        """`watch_cache`: serve reads from a local copy kept current by an etcd watch
        (see commissaire.storage.etcd_cache); writes always go to etcd."""
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server_url {server_url!r} is not an http(s)://host:port URL")
        if bool(certificate_path) != bool(certificate_key_path):
            raise ValueError("certificate_path and certificate_key_path go together")
        # TLS: certificate_ca_path verifies etcd's certificate; certificate_path and
        # certificate_key_path are this client's certificate (etcd --client-cert-auth).
        for option, path in (("certificate_path", certificate_path),
                             ("certificate_key_path", certificate_key_path),
                             ("certificate_ca_path", certificate_ca_path)):
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"{option}: {path} is not a readable file")
        if parts.scheme == "http" and (certificate_path or certificate_ca_path):
            raise ValueError(f"server_url {server_url!r}: TLS options need an https:// URL")
        self.server_url = server_url
        self.prefix = prefix
        self._client_args: dict[str, Any] = {
            "host": parts.hostname, "port": parts.port or 2379, "protocol": parts.scheme,
            "timeout": timeout, "ca_cert": certificate_ca_path,
            "cert_cert": certificate_path, "cert_key": certificate_key_path,
        }
        # requests sessions are not promised to be thread-safe: each call borrows a
        # client (own session and connection pool) from this pool of idle ones.
        self._idle: list[etcd3gw.Etcd3Client] = []
        self._idle_lock = threading.Lock()
        self._watch_response: requests.Response | None = None
        self.cache = WatchedCache(self._load_all, self._stream_changes,
                                  self._interrupt_stream) if watch_cache else None

    # -- transport -------------------------------------------------------

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to the v3 gateway; every failure becomes a StoreUnavailable or NotFound."""
        with self._idle_lock:
            client = self._idle.pop() if self._idle else None
        client = client or self._new_client()
        ok = False
        try:
            result: dict[str, Any] = client.post(client.get_url(path), json=payload)
            ok = True
            return result
        except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                requests.RequestException, OSError) as exc:  # OSError: a TLS file went away
            detail = str(exc.detail_text if isinstance(exc, etcd_exc.Etcd3Exception) else exc)
            raise errors.StoreUnavailable(
                f"etcd at {self.server_url} cannot be reached: {detail[:300]}") from exc
        except etcd_exc.Etcd3Exception as exc:
            detail = str(exc.detail_text or exc)
            if "lease not found" in detail:
                raise errors.NotFound(f"etcd at {self.server_url}: lease not found "
                                      "(it expired or was revoked)") from exc
            raise errors.StoreUnavailable(
                f"etcd at {self.server_url} refused {path}: {detail[:300]}") from exc
        finally:
            if ok:
                with self._idle_lock:
                    self._idle.append(client)
            else:  # a failed session may hold a broken connection
                client.session.close()

    def _new_client(self) -> etcd3gw.Etcd3Client:
        client = etcd3gw.Etcd3Client(**self._client_args)
        # Not trusting the environment skips requests' scan of every environment
        # variable for proxy settings on each call (a third of its CPU here), and
        # etcd is never meant to be reached through an HTTP proxy.
        client.session.trust_env = False
        return client

    # -- the watched cache -------------------------------------------------

    def _prefix_range(self) -> dict[str, str]:
        start = self.prefix.encode("utf-8")
        return {"key": _b64(start), "range_end": _b64(_range_end(start))}

    def _load_all(self) -> tuple[int, list[Item]]:
        result = self._post("/kv/range", self._prefix_range())
        revision = int(result.get("header", {}).get("revision", 0))
        return revision, [self._item(kv) for kv in result.get("kvs") or []]

    def _stream_changes(self, start_revision: int, on_created: Callable[[], None],
                        on_change: Callable[[Item | str, int], None]) -> None:
        client = self._new_client()
        request: dict[str, Any] = {"create_request": {**self._prefix_range(),
                                                      "start_revision": start_revision}}
        response = client.session.post(client.get_url("/watch"), json=request, stream=True,
                                       timeout=(self._client_args["timeout"], None))
        self._watch_response = response
        try:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                result = json.loads(line).get("result") or {}
                if result.get("canceled"):
                    raise errors.StoreUnavailable(f"etcd cancelled the watch: "
                                                  f"{result.get('cancel_reason', '')}")
                if result.get("created"):
                    on_created()
                for event in result.get("events") or []:
                    kv = event["kv"]
                    revision = int(kv["mod_revision"])
                    if event.get("type") == "DELETE":
                        full = _unb64(kv["key"]).decode("utf-8")
                        on_change(full[len(self.prefix):], revision)
                    else:
                        on_change(self._item(kv), revision)
        finally:
            response.close()
            client.session.close()

    def _interrupt_stream(self) -> None:
        """Shut the stream's socket down: the reading thread then sees its end.
        (Closing the response from here would wait for that thread's lock.)"""
        response = self._watch_response
        if response is None:
            return
        try:
            sock = socket.fromfd(response.raw._fp.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        except (AttributeError, OSError, ValueError):
            return
        with sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _full_key(self, key: str) -> bytes:
        return (self.prefix + key).encode("utf-8")

    def _item(self, kv: dict[str, Any]) -> Item:
        full = _unb64(kv["key"]).decode("utf-8")
        key = full[len(self.prefix):]
        try:
            value = json.loads(_unb64(kv.get("value", "")))
        except ValueError:
            raise errors.StoreUnavailable(
                f"etcd key {full!r} at {self.server_url} does not hold a JSON document") from None
        return Item(key, value, int(kv["mod_revision"]))

    # -- StoreHandler ----------------------------------------------------

    def scan(self, start: str, end: str, *, limit: int = 0,
             newest_first: bool = False) -> list[Item]:
        """One range request: etcd sorts and limits it (not served from the cache,
        which holds no order)."""
        result = self._post("/kv/range", {
            "key": _b64(self._full_key(start)), "range_end": _b64(self._full_key(end)),
            "sort_order": "DESCEND" if newest_first else "ASCEND", "sort_target": "KEY",
            "limit": max(0, limit)})
        return [self._item(kv) for kv in result.get("kvs") or []]

    def count(self, start: str, end: str) -> int:
        result = self._post("/kv/range", {
            "key": _b64(self._full_key(start)), "range_end": _b64(self._full_key(end)),
            "count_only": True})
        return int(result.get("count", 0))

    def get(self, key: str) -> Item | None:
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not MISS:
                return cached  # type: ignore[return-value]
        return self._get_fresh(key)

    def _get_fresh(self, key: str) -> Item | None:
        result = self._post("/kv/range", {"key": _b64(self._full_key(key))})
        kvs = result.get("kvs") or []
        return self._item(kvs[0]) if kvs else None

    def list(self, prefix: str) -> list[Item]:
        if self.cache is not None:
            cached = self.cache.list(prefix)
            if cached is not None:
                return cached
        start = self._full_key(prefix)
        result = self._post("/kv/range", {
            "key": _b64(start), "range_end": _b64(_range_end(start)),
            "sort_order": "ASCEND", "sort_target": "KEY",
        })
        return [self._item(kv) for kv in result.get("kvs") or []]

    def commit(self, txn: Txn, lease: int | None = None) -> bool:
        """One etcd transaction: every compare on mod_revision, then every put and delete."""
        txn.check()
        compares = []
        for key, rev in txn.compares:
            if rev == ABSENT:
                compares.append({"key": _b64(self._full_key(key)), "result": "EQUAL",
                                 "target": "CREATE", "create_revision": 0})
            else:
                compares.append({"key": _b64(self._full_key(key)), "result": "EQUAL",
                                 "target": "MOD", "mod_revision": rev})
        success: list[dict[str, Any]] = []
        for key, value in txn.puts:
            put: dict[str, Any] = {"key": _b64(self._full_key(key)), "value": _encode_value(value)}
            if lease is not None:
                put["lease"] = lease
            success.append({"request_put": put})
        for key in txn.deletes:
            success.append({"request_delete_range": {"key": _b64(self._full_key(key))}})
        result = self._post("/kv/txn", {"compare": compares, "success": success, "failure": []})
        # The gateway omits false booleans: no "succeeded" means the compares failed.
        succeeded = bool(result.get("succeeded", False))
        if not succeeded:
            logger.debug("etcd txn on %s failed its compares", [k for k, _ in txn.compares])
        if self.cache is not None:
            self._update_cache(txn, succeeded, int(result.get("header", {}).get("revision", 0)))
        return succeeded

    def _update_cache(self, txn: Txn, succeeded: bool, revision: int) -> None:
        """Our own commit at once; after a failed compare, the compared keys afresh."""
        assert self.cache is not None
        if succeeded:
            for key, value in txn.puts:
                self.cache.apply(key, Item(key, value, revision), revision)
            for key in txn.deletes:
                self.cache.apply(key, None, revision)
            return
        for key, _rev in txn.compares:
            result = self._post("/kv/range", {"key": _b64(self._full_key(key))})
            kvs = result.get("kvs") or []
            at = int(result.get("header", {}).get("revision", 0))
            self.cache.apply(key, self._item(kvs[0]) if kvs else None,
                             int(kvs[0]["mod_revision"]) if kvs else at)

    def ping(self) -> None:
        self._post("/maintenance/status", {})

    def close(self) -> None:
        """Close idle sessions (a later call opens a new one) and stop the watch."""
        if self.cache is not None:
            self.cache.close()
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.session.close()

    # -- leases ----------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds (etcd may round small TTLs up); its id."""
        result = self._post("/lease/grant", {"TTL": int(ttl), "ID": 0})
        if result.get("error"):
            raise errors.StoreUnavailable(f"etcd at {self.server_url} refused a lease: "
                                          f"{result['error']}")
        return int(result["ID"])

    def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease; its TTL. NotFound when it already expired."""
        result = self._post("/lease/keepalive", {"ID": lease_id})
        ttl = int((result.get("result") or {}).get("TTL", 0))
        if ttl <= 0:
            raise errors.NotFound(f"etcd lease {lease_id} expired or was revoked")
        return ttl

    def lease_revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys; a lease already gone is not an error."""
        try:
            self._post("/lease/revoke", {"ID": lease_id})
        except errors.NotFound:
            logger.debug("etcd lease %s was already gone", lease_id)
        finally:
            if self.cache is not None:
                # etcd deleted the lease's keys; which ones, only the watch will say.
                self.cache.resync()


StoreHandlerClass = EtcdStoreHandler
