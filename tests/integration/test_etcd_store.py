"""EtcdStoreHandler against a real etcd: the shared store contract, plus etcd's own."""
from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from commissaire import errors
from commissaire.storage.base import ABSENT, Item, Txn
from commissaire.storage.etcd import EtcdStoreHandler
from tests.support.servers import EtcdServer, free_port
from tests.support.store_contract import StoreContract, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def handlers() -> Iterator[list[EtcdStoreHandler]]:
    made: list[EtcdStoreHandler] = []
    yield made
    for handler in made:
        handler.close()


class TestEtcdContract(StoreContract):
    @pytest.fixture
    def make_store(self, etcd_server: EtcdServer, handlers: list[EtcdStoreHandler]) -> Any:
        def make(prefix: str) -> EtcdStoreHandler:
            handlers.append(EtcdStoreHandler(etcd_server.url, prefix=prefix,
                                             **etcd_server.tls_options))
            return handlers[-1]
        return make


def test_values_are_json_text_under_the_prefix(etcd_server: EtcdServer,
                                               handlers: list[EtcdStoreHandler]) -> None:
    store = EtcdStoreHandler(etcd_server.url, prefix="/json-check/", **etcd_server.tls_options)
    handlers.append(store)
    assert store.commit(Txn(puts=[("hosts/10.0.0.1", {"address": "10.0.0.1", "u": "é"})]))
    raw = etcd_server.raw_client()
    ((value, meta),) = raw.get("/json-check/hosts/10.0.0.1", metadata=True)
    assert json.loads(value) == {"address": "10.0.0.1", "u": "é"}
    item = store.get("hosts/10.0.0.1")
    assert item is not None and item.revision == int(meta["mod_revision"])


def test_stopped_etcd_is_store_unavailable_naming_the_url() -> None:
    with EtcdServer() as server:
        store = EtcdStoreHandler(server.url, timeout=2.0, **server.tls_options)
        assert store.commit(Txn(puts=[("a", {})]))
        url = server.url
    for call in (lambda: store.get("a"), lambda: store.list(""), store.ping,
                 lambda: store.commit(Txn(puts=[("a", {})])), lambda: store.lease_grant(5)):
        with pytest.raises(errors.StoreUnavailable, match=f"etcd at {url} cannot be reached"):
            call()
    store.close()


def test_nothing_listening_is_store_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(errors.StoreUnavailable, match=url):
        EtcdStoreHandler(url, timeout=1.0).ping()


def test_silent_server_times_out_as_store_unavailable() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable, match=url):
            EtcdStoreHandler(url, timeout=0.5).get("a")
        assert time.monotonic() - started < 5


def test_not_etcd_is_store_unavailable(redis_server: Any) -> None:
    # Redis speaks another protocol on the port: no JSON, no HTTP.
    url = "http://127.0.0.1:" + redis_server.url.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(errors.StoreUnavailable, match=url):
        EtcdStoreHandler(url, timeout=1.0).get("a")


def test_a_private_key_is_not_readable_in_an_etcd_dump(etcd_server: EtcdServer,
                                                        tmp_path: Any) -> None:
    """What an operator with etcd access sees: ciphertext, never the key or its base64."""
    from commissaire.secrets import SecretBox, generate_key_file
    from commissaire.storage.registry import load_handlers
    from commissaire_service.storage.repository import Repository
    from commissaire_service.storage.service import StorageService

    key_file = tmp_path / "secrets.key"
    generate_key_file(str(key_file))
    prefix = f"/dump-check-{time.monotonic_ns()}/"
    handlers = load_handlers([etcd_server.handler_config(prefix=prefix, models=["*"])])
    service = StorageService(Repository(handlers, SecretBox.from_key_file(str(key_file))),
                             notify=lambda *a, **k: None)
    private = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUA"
               "VERYSECRETMATERIAL\n-----END OPENSSH PRIVATE KEY-----\n")
    encoded = base64.b64encode(private.encode()).decode()
    service.create_host({"address": "127.0.250.7"},
                        {"address": "127.0.250.7", "ssh_priv_key": encoded})
    assert service.reveal_creds("127.0.250.7")["ssh_priv_key"] == encoded
    raw = etcd_server.raw_client()
    dump = "".join(value.decode() if isinstance(value, bytes) else str(value)
                   for value in raw.get_prefix(prefix))
    assert "127.0.250.7" in dump  # the dump does hold the host's records
    assert "VERYSECRETMATERIAL" not in dump
    assert encoded not in dump and encoded[:40] not in dump


class TestEtcdCachedContract(StoreContract):
    """The same contract with reads served by the watched cache."""

    @pytest.fixture
    def make_store(self, etcd_server: EtcdServer, handlers: list[EtcdStoreHandler]) -> Any:
        def make(prefix: str) -> EtcdStoreHandler:
            handler = EtcdStoreHandler(etcd_server.url, prefix=prefix, watch_cache=True,
                                       **etcd_server.tls_options)
            handlers.append(handler)
            assert handler.cache is not None and handler.cache.wait_live(10)
            return handler
        return make


def _cached(server: EtcdServer, prefix: str,
            handlers: list[EtcdStoreHandler]) -> EtcdStoreHandler:
    handler = EtcdStoreHandler(server.url, prefix=prefix, watch_cache=True, **server.tls_options)
    handlers.append(handler)
    assert handler.cache is not None and handler.cache.wait_live(10)
    return handler


def test_a_cached_copy_sees_another_process_writes(etcd_server: EtcdServer,
                                                   handlers: list[EtcdStoreHandler]) -> None:
    prefix = f"/cache-{time.monotonic_ns()}/"
    one, two = _cached(etcd_server, prefix, handlers), _cached(etcd_server, prefix,
                                                                    handlers)
    assert one.commit(Txn(puts=[("hosts/a", {"v": 1})]))
    assert wait_until(lambda: (two.get("hosts/a") or Item("", {}, 0)).value == {"v": 1})
    assert [i.key for i in two.list("hosts/")] == ["hosts/a"]
    assert one.commit(Txn(deletes=["hosts/a"]))
    assert wait_until(lambda: two.get("hosts/a") is None)


def test_a_stale_copy_never_wins_a_write(etcd_server: EtcdServer,
                                         handlers: list[EtcdStoreHandler]) -> None:
    """A write based on an old revision fails; the failure refreshes the copy."""
    prefix = f"/stale-{time.monotonic_ns()}/"
    one, two = _cached(etcd_server, prefix, handlers), _cached(etcd_server, prefix,
                                                                    handlers)
    assert one.commit(Txn(compares=[("k", ABSENT)], puts=[("k", {"v": 1})]))
    seen = one.get("k")
    assert seen is not None
    assert two.commit(Txn(compares=[("k", seen.revision)], puts=[("k", {"v": 2})]))
    # one's copy may not have the watch event yet: its compare on the old revision fails.
    assert not one.commit(Txn(compares=[("k", seen.revision)], puts=[("k", {"v": 3})]))
    fresh = one.get("k")
    assert fresh is not None and fresh.value == {"v": 2}
    assert one.commit(Txn(compares=[("k", fresh.revision)], puts=[("k", {"v": 3})]))


def test_a_cached_handler_reports_a_stopped_etcd(handlers: list[EtcdStoreHandler]) -> None:
    with EtcdServer() as server:
        store = _cached(server, "/", handlers)
        assert store.commit(Txn(puts=[("a", {})]))
        url = server.url

    def refused() -> bool:
        try:
            store.get("a")
        except errors.StoreUnavailable as exc:
            return url in exc.description
        return False
    assert wait_until(refused)


def test_changing_what_was_read_never_changes_the_cached_copy(
        etcd_server: EtcdServer, handlers: list[EtcdStoreHandler]) -> None:
    """A read-modify-write that changes its record and then gives up leaves no trace."""
    store = _cached(etcd_server, f"/copy-{time.monotonic_ns()}/", handlers)
    value = {"hosts": {"a": {"state": "pending"}}}
    assert store.commit(Txn(puts=[("op", value)]))
    value["hosts"]["a"]["state"] = "changed after the commit"
    read = store.get("op")
    assert read is not None and read.value == {"hosts": {"a": {"state": "pending"}}}
    read.value["hosts"]["a"]["state"] = "changed by a reader"
    listed = store.list("")
    listed[0].value["hosts"].clear()
    again = store.get("op")
    assert again is not None and again.value == {"hosts": {"a": {"state": "pending"}}}
