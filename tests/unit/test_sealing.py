"""Secrets at rest with the real SecretBox over SQLite: a credentials record in clear is
an error and never used; a sealed value opens only on the record and incarnation it
was sealed for; records of the previous format still open and are upgraded."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commissaire import errors
from commissaire.ansible import runner
from commissaire.secrets import SecretBox, generate_key_file
from commissaire.ssh import REACHABLE, ProbeResult
from commissaire.storage.base import Txn
from commissaire.storage.sqlite import SqliteStoreHandler
from commissaire_service.investigator import service as investigator_module
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.storage.reencrypt import reencrypt
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.sealing import SEALED
from commissaire_service.storage.service import StorageService
from commissaire_service.watcher import service as watcher_module
from commissaire_service.watcher.service import WatcherService
from tests.unit.fakes import DirectBus, HandlerSet
from tests.unit.test_investigator import ED25519, HOST_KEY

KEY = base64.b64encode(ED25519.encode()).decode()
HOSTILE_KEY = base64.b64encode(b"{{ lookup('pipe', 'id > /tmp/x') }}\n").decode()
CREDS = "secrets/hosts/"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStoreHandler]:
    handler = SqliteStoreHandler(str(tmp_path / "store.db"))
    yield handler
    handler.close()


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    path = tmp_path / "secrets.key"
    generate_key_file(str(path))
    return SecretBox.from_key_file(str(path))


@pytest.fixture
def world(store: SqliteStoreHandler, box: SecretBox) -> tuple[DirectBus, StorageService]:
    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(store), box), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    return bus, storage


def create(storage: StorageService, address: str, key: str = KEY) -> dict[str, Any]:
    return dict(storage.create_host({"address": address}, {
        "address": address, "remote_user": "root", "ssh_priv_key": key})["record"])


def raw(store: SqliteStoreHandler, key: str) -> dict[str, Any]:
    item = store.get(key)
    assert item is not None
    return item.value


def put(store: SqliteStoreHandler, key: str, value: dict[str, Any]) -> None:
    assert store.commit(Txn(puts=[(key, value)]))


def test_stored_credentials_are_format_2_and_bound_to_the_incarnation(world, store) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    host = create(storage, "10.0.0.1")
    stored = raw(store, CREDS + "10.0.0.1")
    assert set(stored) == {"address", "uid", SEALED}
    assert stored["uid"] == host["uid"] and stored[SEALED]["v"] == 2
    assert KEY not in json.dumps(stored)
    assert storage.reveal_creds("10.0.0.1")["ssh_priv_key"] == KEY


def test_unencrypted_credentials_are_an_error_and_never_used(
        world, store, monkeypatch: pytest.MonkeyPatch) -> None:
    bus, storage = world
    host = create(storage, "127.0.1.2")
    # A downgrade: someone with write access to the store puts a key in clear.
    put(store, CREDS + "127.0.1.2", {"address": "127.0.1.2", "uid": host["uid"],
                                     "ssh_priv_key": HOSTILE_KEY, "remote_user": "root"})
    with pytest.raises(errors.SecretsUnavailable, match="stored unencrypted") as info:
        bus.call("storage.reveal_creds", {"address": "127.0.1.2"})
    assert info.value.http_status == 503 and HOSTILE_KEY not in info.value.description
    runs: list[Any] = []
    monkeypatch.setattr(investigator_module.runner, "run_playbook",
                        lambda *a, **kw: runs.append(a) or runner.RunResult({}, "successful"))

    async def fake_fetch(address: str, port: int = 22, timeout: float = 10.0, **kw: Any) -> str:
        return HOST_KEY

    monkeypatch.setattr(investigator_module, "fetch_host_key", fake_fetch)
    svc = InvestigatorService(bus)
    try:
        svc.run_batch(["127.0.1.2"])
    finally:
        svc.stop()
    shown = storage.get_host("127.0.1.2")
    assert shown["status"] == "failed"
    assert "stored unencrypted" in shown["status_reason"]
    assert runs == []  # no key was used


def test_the_watcher_shows_unusable_credentials_and_uses_no_key(
        world, store, monkeypatch: pytest.MonkeyPatch) -> None:
    bus, storage = world
    host = create(storage, "127.0.1.3")
    storage.update_host("127.0.1.3", {"status": "active", "bootstrapped": True})
    put(store, CREDS + "127.0.1.3", {"address": "127.0.1.3", "uid": host["uid"],
                                     "ssh_priv_key": HOSTILE_KEY, "remote_user": "root"})
    probed: list[str] = []

    async def fake_probe_many(targets, concurrency, timeout, kex_algorithms="", **kw):  # type: ignore[no-untyped-def]
        probed.extend(t.address for t in targets)
        return {t.address: ProbeResult(REACHABLE, output="b") for t in targets}

    monkeypatch.setattr(watcher_module, "probe_many", fake_probe_many)
    watcher = WatcherService(bus, interval=1, start=False)
    watcher.load()
    watcher.run_cycle()
    assert probed == []
    shown = storage.get_host("127.0.1.3")
    assert shown["status"] == "failed" and "stored unencrypted" in shown["status_reason"]


def test_a_sealed_value_copied_onto_another_record_does_not_open(world, store) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    create(storage, "10.0.0.1")
    other = create(storage, "10.0.0.2", key=base64.b64encode(b"other").decode())
    copied = raw(store, CREDS + "10.0.0.1")
    put(store, CREDS + "10.0.0.2", {**copied, "address": "10.0.0.2", "uid": other["uid"]})
    with pytest.raises(errors.SecretsUnavailable, match="wrong key or tampered data"):
        storage.reveal_creds("10.0.0.2")
    # A host whose credentials do not open can still be deleted.
    assert storage.delete_host("10.0.0.2") == []


def test_a_sealed_value_copied_onto_a_new_incarnation_does_not_open(world, store) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    create(storage, "10.0.0.1")
    old_blob = raw(store, CREDS + "10.0.0.1")
    storage.delete_host("10.0.0.1")
    new = create(storage, "10.0.0.1", key=base64.b64encode(b"new user's key").decode())
    # As it was (naming the old incarnation): not the host's incarnation.
    put(store, CREDS + "10.0.0.1", old_blob)
    with pytest.raises(errors.SecretsUnavailable, match="another incarnation"):
        storage.reveal_creds("10.0.0.1")
    # Relabelled with the new uid: the associated data no longer matches.
    put(store, CREDS + "10.0.0.1", {**old_blob, "uid": new["uid"]})
    with pytest.raises(errors.SecretsUnavailable, match="wrong key or tampered data"):
        storage.reveal_creds("10.0.0.1")


def test_a_token_is_bound_to_its_manager_and_never_read_in_clear(world, store) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    for name, token in (("cm1", "t0ken-one"), ("cm2", "t0ken-two")):
        storage.create("ContainerManagerConfig", {"name": name, "type": "kubernetes",
                                                  "options": {"server_url": "https://k",
                                                              "token": token}})
    assert storage.get("ContainerManagerConfig", "cm1")["options"]["token"] == "******"
    cm1 = raw(store, "container_managers/cm1")
    cm2 = raw(store, "container_managers/cm2")
    assert "t0ken" not in json.dumps([cm1, cm2]) and cm1["uid"] != cm2["uid"]
    put(store, "container_managers/cm2", {**cm2, "options": cm1["options"]})
    with pytest.raises(errors.SecretsUnavailable):
        storage.reveal_container_manager("cm2")
    put(store, "container_managers/cm2", {**cm2, "options": {"server_url": "https://k",
                                                             "token": "in-clear"}})
    with pytest.raises(errors.SecretsUnavailable, match="stored unencrypted"):
        storage.reveal_container_manager("cm2")
    assert storage.delete("ContainerManagerConfig", "cm2") == []
    assert storage.reveal_container_manager("cm1")["options"]["token"] == \
        "t0ken-one"


def test_records_of_the_previous_format_open_and_are_upgraded(world, store, box) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    create(storage, "10.0.0.1")
    # As the previous version wrote them: no uid, envelope bound to "HostCreds/<address>".
    host = raw(store, "hosts/10.0.0.1")
    host.pop("uid")
    secret = json.dumps({"ssh_priv_key": KEY, "remote_user": "core"})
    put(store, "hosts/10.0.0.1", host)
    put(store, CREDS + "10.0.0.1", {"address": "10.0.0.1",
                                    SEALED: box.encrypt(secret, "HostCreds/10.0.0.1")})
    creds = storage.reveal_creds("10.0.0.1")
    assert (creds["ssh_priv_key"], creds["remote_user"]) == (KEY, "core")
    strict = StorageService(Repository(HandlerSet(store), box, accept_format_1=False))
    with pytest.raises(errors.SecretsUnavailable, match="format 1"):
        strict.reveal_creds("10.0.0.1")
    report = reencrypt(HandlerSet(store), box)
    assert report.resealed == 1 and report.failed == []
    upgraded = raw(store, CREDS + "10.0.0.1")
    assert upgraded[SEALED]["v"] == 2 and upgraded["uid"] == ""
    assert storage.reveal_creds("10.0.0.1")["remote_user"] == "core"
    assert strict.reveal_creds("10.0.0.1")["remote_user"] == "core"
    # A format-1 envelope is bound to its record all the same.
    put(store, CREDS + "10.0.0.2", {"address": "10.0.0.2",
                                    SEALED: box.encrypt(secret, "HostCreds/10.0.0.1")})
    put(store, "hosts/10.0.0.2", {**host, "address": "10.0.0.2"})
    with pytest.raises(errors.SecretsUnavailable):
        storage.reveal_creds("10.0.0.2")


def test_reencrypt_reports_records_that_do_not_open(world, store, box) -> None:  # type: ignore[no-untyped-def]
    bus, storage = world
    host = create(storage, "10.0.0.1")
    create(storage, "10.0.0.2")
    put(store, CREDS + "10.0.0.1", {"address": "10.0.0.1", "uid": host["uid"],
                                    "ssh_priv_key": HOSTILE_KEY})
    report = reencrypt(HandlerSet(store), box)
    assert report.current == 1 and report.resealed == 0
    assert [(k, key) for k, key, _why in report.failed] == [("HostCreds", "10.0.0.1")]
    assert raw(store, CREDS + "10.0.0.1")["ssh_priv_key"] == HOSTILE_KEY  # left as it was


def test_reencrypt_command_on_an_allinone_data_dir(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from commissaire_service.storage.reencrypt import main

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    generate_key_file(str(data_dir / "secrets.key"))
    handler = SqliteStoreHandler(str(data_dir / "commissaire.db"))
    try:
        storage = StorageService(Repository(HandlerSet(handler), SecretBox.from_key_file(
            str(data_dir / "secrets.key"))))
        host = create(storage, "10.0.0.1")
        assert main(["--data-dir", str(data_dir)]) == 0
        assert "re-encrypted 0 record(s)" in capsys.readouterr().out
        put(handler, CREDS + "10.0.0.1", {"address": "10.0.0.1", "uid": host["uid"],
                                          "ssh_priv_key": HOSTILE_KEY})
        assert main(["--data-dir", str(data_dir)]) == 1
        err = capsys.readouterr().err
        assert "HostCreds 10.0.0.1: the credentials of host 10.0.0.1 are stored unencrypted" \
            in err and HOSTILE_KEY not in err
    finally:
        handler.close()
    assert main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_operation_uses_no_unencrypted_key(world, store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import time

    from commissaire_service.clusterexec import executor as executor_module
    from commissaire_service.clusterexec.executor import Settings
    from commissaire_service.clusterexec.service import ClusterExecService
    from tests.unit.test_clusterexec import Fleet

    bus, storage = world
    fleet = Fleet(reboot_seconds=0.1)
    monkeypatch.setattr(executor_module.runner, "run_playbook", fleet.run_playbook)
    monkeypatch.setattr(executor_module, "probe", fleet.probe)
    storage.create("Cluster", {"name": "c1"})
    host = dict(storage.create_host({"address": "127.0.3.1"}, {
        "address": "127.0.3.1", "remote_user": "root", "ssh_priv_key": KEY}, "c1")["record"])
    storage.update_host("127.0.3.1", {"status": "disassociated", "bootstrapped": True,
                                      "os": "debian", "ssh_host_key": HOST_KEY})
    fleet.add("127.0.3.1")
    put(store, CREDS + "127.0.3.1", {"address": "127.0.3.1", "uid": host["uid"],
                                     "ssh_priv_key": HOSTILE_KEY, "remote_user": "root"})
    svc = ClusterExecService(bus, lease_ttl=3, settings=Settings(gate_timeout=2, poll=0.02),
                             start=False)
    storage.start_operation("ClusterRestart", {"name": "c1", "options": {}})
    assert svc.try_run("ClusterRestart", "c1")
    deadline = time.monotonic() + 15
    while (op := storage.get_operation("ClusterRestart", "c1"))["status"] == "in_process" \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    entry = op["hosts"]["127.0.3.1"]
    assert entry["state"] == "failed" and "stored unencrypted" in entry["reason"], entry
    assert fleet.actions == []
