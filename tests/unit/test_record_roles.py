"""What a record's field is for is declared once, on the field (`Role`), and every
place that needs it reads that declaration: safe serialization, what is stored,
sealing at rest, the storage service's state updates, input validation and the
OpenAPI document. Each test below changes or reads a declaration and watches the
behaviour a user sees follow it."""
from __future__ import annotations

import base64
import json
from typing import Any, ClassVar

import attrs
import pytest

from commissaire import errors, models
from commissaire.config import ServerConfig
from commissaire.models import (
    MODELS,
    Cluster,
    ClusterRestart,
    ContainerManagerConfig,
    Host,
    HostCreds,
    Model,
    Role,
    declared,
)
from commissaire_http.app import routes
from commissaire_http.resources.openapi import build_document
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.sealing import SEALED, is_current, seal, unseal
from commissaire_service.storage.service import StorageService
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox

KEY = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n").decode()


def test_the_roles_of_the_records_are_declared_on_their_fields() -> None:
    assert HostCreds.names(Role.SECRET) == ("ssh_priv_key",)
    assert HostCreds.names(Role.SEALED) == ("ssh_priv_key", "remote_user")
    assert ContainerManagerConfig.secret_keys() == {"options": ("token",)}
    assert Cluster.names(Role.DERIVED) == ("status", "hosts")
    assert Cluster.names(Role.HIDDEN) == ("hostset",)
    assert "uid" not in Host.names(Role.RECORDED) and "ssh_port" in Host.names(Role.RECORDED)
    assert set(Host.names(Role.STATE)) <= set(Host.names(Role.READ_ONLY))
    assert ClusterRestart.names(Role.STATE) == (
        "status", "started_at", "finished_at", "hosts", "reason")


def test_secrets_and_internals_never_reach_the_safe_form_or_a_repr() -> None:
    creds = HostCreds(address="10.0.0.1", ssh_priv_key=KEY, remote_user="core")
    assert creds.to_safe_dict() == {"address": "10.0.0.1", "remote_user": "core", "uid": ""}
    assert KEY not in repr(creds) and "core" in repr(creds)
    manager = ContainerManagerConfig(name="k", type="kubernetes", uid="u1",
                                     options={"server_url": "https://127.0.0.1", "token": "t0k"})
    shown = manager.to_safe_dict()
    assert shown["options"]["token"] == "******" and "uid" not in shown
    assert manager.options["token"] == "t0k", "masking the safe form leaves the record"
    assert "t0k" not in repr(manager)


def test_derived_fields_are_shown_but_never_stored() -> None:
    cluster = Cluster(name="c", hostset=["10.0.0.1"]).with_host_statuses(["active"])
    assert cluster.to_safe_dict()["hosts"] == {"total": 1, "available": 1, "unavailable": 0}
    assert "hostset" not in cluster.to_safe_dict()
    stored = cluster.to_stored_dict()
    assert "hosts" not in stored and "status" not in stored and stored["hostset"] == ["10.0.0.1"]


def test_read_only_fields_are_ignored_on_input_and_marked_in_the_document() -> None:
    host, _creds, _cluster = Host.input_to_records(
        "10.0.0.1", {"ssh_priv_key": KEY, "status": "active", "cpus": 64, "uid": "forged"})
    assert (host.status, host.cpus, host.uid) == ("investigating", 0, "")
    document = build_document(routes(DirectBus(), ServerConfig()))
    put = document["paths"]["/api/v0/host/{address}"]["put"]
    shown = put["requestBody"]["content"]["application/json"]["schema"]["properties"]
    for name in Host.names(Role.READ_ONLY):
        assert shown[name]["readOnly"] is True, name
    assert "readOnly" not in shown["ssh_port"]
    with pytest.raises(errors.ValidationError):
        ContainerManagerConfig.from_input("k", {"type": "trivial", "hostset": []})


def test_state_updates_accept_exactly_the_recorded_fields() -> None:
    bus = DirectBus()
    storage = StorageService(Repository(HandlerSet(DictStore()), ReversibleBox()),
                             notify=bus.notify)
    storage.ensure_default_network()
    uid = storage.create_host({"address": "10.0.0.1"}, {
        "address": "10.0.0.1", "ssh_priv_key": KEY})["record"]["uid"]
    storage.update_host("10.0.0.1", {"cpus": 4, "status": "active"}, uid=uid)
    for field in ("uid", "cluster", "source", "address"):
        with pytest.raises(errors.ValidationError) as refused:
            storage.update_host("10.0.0.1", {field: "x"}, uid=uid)
        assert refused.value.field == field
    assert storage.get_host("10.0.0.1")["cpus"] == 4


@attrs.define(kw_only=True, repr=False)
class _Vault(Model):
    """A record invented for the test: sealing follows its declarations."""

    kind: ClassVar[str] = "Vault"
    collection: ClassVar[str] = "vaults"
    name: str = declared("")
    password: str = declared("", Role.SECRET)
    settings: dict[str, Any] = declared({}, secret_keys=("api_key",))


def test_sealing_follows_the_declarations_of_any_record(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setitem(MODELS, "Vault", _Vault)
    box = ReversibleBox()
    vault = _Vault(name="v", password="hunter2", settings={"api_key": "k3y", "region": "eu"})
    stored = seal(box, "Vault", "v", vault.to_stored_dict())
    text = json.dumps(stored)
    assert "hunter2" not in text and "k3y" not in text and "eu" in text
    assert SEALED in stored and SEALED in stored["settings"]["api_key"]
    assert not is_current("Vault", stored, "another-kid")
    assert _Vault.from_dict(unseal(box, "Vault", "v", stored)) == vault
    with pytest.raises(errors.SecretsUnavailable, match="stored unencrypted"):
        unseal(box, "Vault", "v", vault.to_stored_dict())
    assert models.model_class("Vault") is _Vault
