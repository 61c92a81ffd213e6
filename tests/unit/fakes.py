"""Fakes for unit tests of one layer (never a stand-in for integration tests)."""
from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from commissaire import errors
from commissaire.bus import protocol
from commissaire.storage.base import ABSENT, Item, StoreHandler, Txn


class DictStore(StoreHandler):
    """A store handler over a dict, with etcd-like revisions, transactions and
    leases; it passes the store contract (tests/unit/test_fakes_contract.py).
    `available = False` makes every call a StoreUnavailable; `commits` counts
    applied transactions. Handlers made with `shared` see one dict, each under
    its own prefix."""

    short_name = "dict"

    def __init__(self, prefix: str = "", shared: DictStore | None = None) -> None:
        self.prefix = prefix
        self.space: _DictSpace = shared.space if shared is not None else _DictSpace()
        self.available = True
        self.commits = 0

    @property
    def data(self) -> MutableMapping[str, tuple[dict[str, Any], int]]:
        """key (without prefix) -> (value, revision), as this handler sees them;
        tests may change them behind the handler's back."""
        return _PrefixView(self.space, self.prefix)

    def _check(self) -> None:
        if not self.available:
            raise errors.StoreUnavailable("dict store switched off")

    def get(self, key: str) -> Item | None:
        self._check()
        with self.space.lock:
            self.space.purge()
            found = self.space.data.get(self.prefix + key)
            return None if found is None else Item(key, copy.deepcopy(found[0]), found[1])

    def list(self, prefix: str) -> list[Item]:
        self._check()
        with self.space.lock:
            self.space.purge()
            n = len(self.prefix)
            return [Item(k[n:], copy.deepcopy(v), r) for k, (v, r, _l) in sorted(self.space.data.items())
                    if k.startswith(self.prefix + prefix)]

    def commit(self, txn: Txn, lease: int | None = None) -> bool:
        self._check()
        txn.check()
        with self.space.lock:
            space = self.space
            space.purge()
            if txn.failed_compare(lambda key: space.data.get(self.prefix + key, (None, ABSENT))[1])\
                    is not None:
                return False
            if lease is not None and lease not in space.leases:
                raise errors.NotFound(f"dict store: lease {lease} expired or was revoked")
            space.revision += 1
            for key, value in txn.puts:
                space.data[self.prefix + key] = (copy.deepcopy(value), space.revision, lease)
            for key in txn.deletes:
                space.data.pop(self.prefix + key, None)
            self.commits += 1
            return True

    def ping(self) -> None:
        self._check()

    def lease_grant(self, ttl: int) -> int:
        self._check()
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 second, not {ttl}")
        with self.space.lock:
            self.space.last_lease += 1
            self.space.leases[self.space.last_lease] = (ttl, time.monotonic() + ttl)
            return self.space.last_lease

    def lease_keepalive(self, lease_id: int) -> int:
        self._check()
        with self.space.lock:
            self.space.purge()
            if lease_id not in self.space.leases:
                raise errors.NotFound(f"dict store: lease {lease_id} expired or was revoked")
            ttl = self.space.leases[lease_id][0]
            self.space.leases[lease_id] = (ttl, time.monotonic() + ttl)
            return ttl

    def lease_revoke(self, lease_id: int) -> None:
        self._check()
        with self.space.lock:
            self.space.end(lease_id)


class _PrefixView(MutableMapping[str, tuple[dict[str, Any], int]]):
    def __init__(self, space: _DictSpace, prefix: str) -> None:
        self.space, self.prefix = space, prefix

    def _keys(self) -> list[str]:
        with self.space.lock:
            self.space.purge()
            return sorted(k[len(self.prefix):] for k in self.space.data
                          if k.startswith(self.prefix))

    def __getitem__(self, key: str) -> tuple[dict[str, Any], int]:
        value, revision, _lease = self.space.data[self.prefix + key]
        return value, revision

    def __setitem__(self, key: str, item: tuple[dict[str, Any], int]) -> None:
        self.space.data[self.prefix + key] = (item[0], item[1], None)

    def __delitem__(self, key: str) -> None:
        del self.space.data[self.prefix + key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


class _DictSpace:
    """What DictStore handlers sharing one dict share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, tuple[dict[str, Any], int, int | None]] = {}
        self.revision = 0
        self.leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, expires, monotonic)
        self.last_lease = 0

    def end(self, lease_id: int) -> None:
        self.leases.pop(lease_id, None)
        for key in [k for k, (_v, _r, lease) in self.data.items() if lease == lease_id]:
            del self.data[key]

    def purge(self) -> None:
        now = time.monotonic()
        for lease_id in [i for i, (_ttl, expires) in self.leases.items() if expires <= now]:
            self.end(lease_id)


class HandlerSet:
    def __init__(self, *handlers: StoreHandler) -> None:
        self.handlers = list(handlers)

    def for_model(self, kind: str, source: str = "") -> StoreHandler:
        if source:
            for handler in self.handlers:
                if handler.short_name == source:
                    return handler
            raise errors.ValidationError(f"{source!r} names no configured storage handler",
                                         field="source")
        return self.handlers[0]

    def all(self) -> list[StoreHandler]:
        return list(self.handlers)


class ReversibleBox:
    """Stands in for SecretBox: obviously not encryption, but keeps the context binding."""

    def encrypt(self, plaintext: str, context: str) -> dict[str, Any]:
        blob = json.dumps([context, plaintext]).encode()
        return {"kid": "fake", "ciphertext": base64.b64encode(blob[::-1]).decode()}

    def decrypt(self, envelope: dict[str, Any], context: str) -> str:
        bound, plaintext = json.loads(base64.b64decode(envelope["ciphertext"])[::-1])
        if bound != context:
            raise errors.SecretsUnavailable("context mismatch")
        return str(plaintext)


class DirectBus:
    """Calls services' dispatch directly, through the JSON-RPC encoding, no broker."""

    def __init__(self, *services: Any) -> None:
        self.services = {s.name: s for s in services}
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.actors: list[tuple[str, dict[str, Any] | None]] = []  # (method, "actor" sent)

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None,
             actor: Any = None) -> Any:
        message = json.loads(json.dumps(protocol.request(method, params or {}, "1", actor)))
        params = message["params"]
        self.calls.append((method, params))
        self.actors.append((method, message.get("actor")))
        service = self.services.get(method.split(".", 1)[0])
        if service is None:
            raise errors.ServiceTimeout(f"the {method.split('.')[0]} service did not answer")
        try:
            value = service.dispatch(method, params, {"request_id": request_id,
                                                      "actor": protocol.parse_actor(message)})
            response = protocol.result("1", json.loads(json.dumps(value)))
        except errors.CommissaireError as exc:
            response = json.loads(json.dumps(protocol.error("1", exc)))
        return protocol.unwrap(response)

    def notify(self, routing_key: str, params: dict[str, Any]) -> None:
        self.notifications.append((routing_key, json.loads(json.dumps(params))))


def api_client(store: DictStore, users: dict[str, Any], events: DictStore | None = None, *,
               more_plugins: tuple[dict[str, Any], ...] = (), bus: DirectBus | None = None,
               **settings: Any) -> Any:
    """The REST app with basic auth for `users` (then `more_plugins`), the real
    storage service on `store` and a direct bus (`bus`, or a new one); `settings`
    are further ServerConfig fields. The activity stream is kept in `events` (by
    default a store of its own, so that `store` holds the records alone: refusals
    are recorded there too)."""
    from falcon import testing

    from commissaire.config import ServerConfig
    from commissaire_http.app import create_app
    from commissaire_service.storage.activity import ActivityLog
    from commissaire_service.storage.repository import Repository
    from commissaire_service.storage.service import StorageService

    bus = bus or DirectBus()
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify,
                             activity=ActivityLog(HandlerSet(events or DictStore())))
    storage.ensure_default_network()
    bus.services["storage"] = storage
    config = ServerConfig(
        authentication_plugins=[{"name": "commissaire_http.authentication.httpbasicauth",
                                 "users": users}, *more_plugins], **settings)
    return testing.TestClient(create_app(config, bus))
