"""Key rotation on the real stores (etcd and SQLite), while a storage service runs:
a new key is added, the re-encrypt command re-seals every record with it, the old
key is removed, and everything still opens."""
from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import commissaire.secrets as secrets_module
from commissaire.secrets import SecretBox, generate_key_file
from commissaire.storage.base import StoreHandler, Txn
from commissaire.storage.registry import load_handlers
from commissaire_service.storage import reencrypt as reencrypt_module
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.sealing import SEALED
from commissaire_service.storage.service import StorageService
from tests.support.servers import EtcdServer

pytestmark = pytest.mark.integration

HOSTS = [f"10.9.0.{i}" for i in range(1, 6)]


def key_of(address: str) -> str:
    return base64.b64encode(f"private key of {address}".encode()).decode()


@pytest.fixture(params=["sqlite", "etcd"])
def handler_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"name": "commissaire.storage.sqlite", "path": str(tmp_path / "store.db"),
                "models": ["*"]}
    etcd: EtcdServer = request.getfixturevalue("etcd_server")
    return dict(etcd.handler_config(prefix=f"/rotate-{uuid.uuid4().hex[:8]}/", models=["*"]))


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(secrets_module, "RELOAD_CHECK_SECONDS", 0.0)
    path = tmp_path / "secrets.key"
    generate_key_file(str(path))
    return path


@pytest.fixture
def service(handler_config: dict[str, Any], key_file: Path) -> Iterator[StorageService]:
    handlers = load_handlers([handler_config])
    svc = StorageService(Repository(handlers, SecretBox.from_key_file(str(key_file))))
    svc.ensure_default_network()
    yield svc
    handlers.close()


def envelopes(handler_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every envelope in the store, read by another client than the service's."""
    handlers = load_handlers([handler_config])
    try:
        store: StoreHandler = handlers.all()[0]
        found = [i.value[SEALED] for i in store.list("secrets/hosts/")]
        found += [i.value["options"]["token"][SEALED] for i in store.list("container_managers/")
                  if "token" in i.value["options"]]
        return found
    finally:
        handlers.close()


def test_rotation_reencrypts_every_record_online(
        service: StorageService, handler_config: dict[str, Any], key_file: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for address in HOSTS:
        service.create_host({"address": address}, {"address": address, "remote_user": "core",
                                                    "ssh_priv_key": key_of(address)})
    service.create("ContainerManagerConfig", {"name": "cm", "type": "kubernetes", "options": {
        "server_url": "https://k8s.example:6443", "token": "bearer-t0ken"}})
    # One record as the previous version sealed it (format 1, no incarnation).
    handlers = load_handlers([handler_config])
    legacy_secret = json.dumps({"ssh_priv_key": key_of("10.9.0.9"), "remote_user": "root"})
    old_box = SecretBox.from_key_file(str(key_file))
    assert handlers.all()[0].commit(Txn(puts=[
        ("hosts/10.9.0.9", {"address": "10.9.0.9", "status": "active"}),
        ("secrets/hosts/10.9.0.9", {"address": "10.9.0.9",
                                    SEALED: old_box.encrypt(legacy_secret, "HostCreds/10.9.0.9")})]))
    handlers.close()
    old_kid = old_box.current_kid
    assert {e["kid"] for e in envelopes(handler_config)} == {old_kid}

    # 1. A new key on the first line; the old one kept to open what it sealed.
    new_file = tmp_path / "new.key"
    new_kid = generate_key_file(str(new_file))
    old_line = key_file.read_text()
    key_file.write_text(new_file.read_text() + old_line)

    # 2. Re-encrypt while the service keeps answering.
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            try:
                for address in HOSTS:
                    assert service.reveal_creds(address)["ssh_priv_key"] == key_of(address)
            except BaseException as exc:  # reported below
                failures.append(exc)
                return

    reader = threading.Thread(target=keep_reading)
    reader.start()
    config = tmp_path / "storage.conf"
    config.write_text(json.dumps({"secrets-key-file": str(key_file),
                                  "storage-handlers": [handler_config]}))
    try:
        assert reencrypt_module.main(["-c", str(config)]) == 0
    finally:
        stop.set()
        reader.join(30)
    assert failures == []
    assert f"re-encrypted {len(HOSTS) + 2} record(s) with key id {new_kid}" in \
        capsys.readouterr().out
    found = envelopes(handler_config)
    assert len(found) == len(HOSTS) + 2
    assert {(e["kid"], e["v"]) for e in found} == {(new_kid, 2)}
    # Run again: nothing left to do.
    assert reencrypt_module.main(["-c", str(config)]) == 0
    assert "re-encrypted 0 record(s)" in capsys.readouterr().out

    # 3. The old key removed: everything opens, in the running service and a new one.
    key_file.write_text(new_file.read_text())
    fresh_handlers = load_handlers([handler_config])
    fresh = StorageService(Repository(fresh_handlers, SecretBox.from_key_file(str(key_file))))
    try:
        for svc in (service, fresh):
            for address in HOSTS:
                creds = svc.reveal_creds(address)
                assert (creds["ssh_priv_key"], creds["remote_user"]) == (key_of(address), "core")
            assert svc.reveal_creds("10.9.0.9")["ssh_priv_key"] == key_of("10.9.0.9")
            assert svc.reveal_container_manager("cm")["options"]["token"] == \
                "bearer-t0ken"
        assert old_kid not in SecretBox.from_key_file(str(key_file)).kids
    finally:
        fresh_handlers.close()
