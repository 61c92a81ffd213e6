"""Fakes for unit tests of one layer (never a stand-in for integration tests)."""
from __future__ import annotations

import base64
import copy
import json
import threading
from typing import Any

from commissaire import errors
from commissaire.bus import protocol
from commissaire.storage.base import ABSENT, Item, StoreHandler, Txn


class DictStore(StoreHandler):
    """A store handler over a dict, with etcd-like revisions and transactions."""

    short_name = "dict"

    def __init__(self) -> None:
        self.data: dict[str, tuple[dict[str, Any], int]] = {}
        self.revision = 0
        self.lock = threading.Lock()
        self.available = True
        self.commits = 0

    def _check(self) -> None:
        if not self.available:
            raise errors.StoreUnavailable("dict store switched off")

    def get(self, key: str) -> Item | None:
        self._check()
        with self.lock:
            if key not in self.data:
                return None
            value, rev = self.data[key]
            return Item(key, copy.deepcopy(value), rev)

    def list(self, prefix: str) -> list[Item]:
        self._check()
        with self.lock:
            return [Item(k, copy.deepcopy(v), r) for k, (v, r) in sorted(self.data.items())
                    if k.startswith(prefix)]

    def commit(self, txn: Txn, lease: int | None = None) -> bool:
        self._check()
        with self.lock:
            for key, rev in txn.compares:
                current = self.data.get(key, (None, ABSENT))[1]
                if current != rev:
                    return False
            self.revision += 1
            for key, value in txn.puts:
                self.data[key] = (copy.deepcopy(value), self.revision)
            for key in txn.deletes:
                self.data.pop(key, None)
            self.commits += 1
            return True

    def ping(self) -> None:
        self._check()


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

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None) -> Any:
        params = json.loads(json.dumps(params or {}))
        self.calls.append((method, params))
        service = self.services.get(method.split(".", 1)[0])
        if service is None:
            raise errors.ServiceTimeout(f"the {method.split('.')[0]} service did not answer")
        try:
            value = service.dispatch(method, params, {"request_id": request_id})
            response = protocol.result("1", json.loads(json.dumps(value)))
        except errors.CommissaireError as exc:
            response = json.loads(json.dumps(protocol.error("1", exc)))
        return protocol.unwrap(response)

    def notify(self, routing_key: str, params: dict[str, Any]) -> None:
        self.notifications.append((routing_key, json.loads(json.dumps(params))))


def api_client(store: DictStore, users: dict[str, Any], **settings: Any) -> Any:
    """The REST app with basic auth for `users`, the real storage service on `store`
    and a direct bus; `settings` are further ServerConfig fields."""
    from falcon import testing

    from commissaire.config import ServerConfig
    from commissaire_http.app import create_app
    from commissaire_service.storage.repository import Repository
    from commissaire_service.storage.service import StorageService

    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    config = ServerConfig(
        authentication_plugins=[{"name": "commissaire_http.authentication.httpbasicauth",
                                 "users": users}], **settings)
    return testing.TestClient(create_app(config, bus))
