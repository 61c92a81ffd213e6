"""Sealing of secret fields before they reach a store handler.

What is sealed is declared on the models' fields: the fields with the role
SEALED (a HostCreds' key and remote user) go together into one envelope; the
secret keys of a mapping field (a container manager's `options.token`) are
sealed in place. Envelope format 2 (`"v": 2`) binds the record's kind, key
and incarnation (`uid`) as AES-GCM associated data, so a sealed value copied
onto another record, or onto the same record deleted and created again, does
not open. Format 1 (no "v", written before incarnations existed) bound only
"kind/key": it still opens, and every write re-seals it as format 2 (the
re-encrypt command, commissaire_service.storage.reencrypt, upgrades them all).

A credentials record (or token) stored in clear is an error, never used: a
store handler never holds plaintext secrets, so a clear one was put there by
someone else (a downgrade).
"""
from __future__ import annotations

import json
from typing import Any, Protocol

from commissaire.errors import SecretsUnavailable
from commissaire.models import MODELS, Role, model_class

SEALED = "__sealed__"
VERSION = 2  # the format every seal() writes
# The kinds with a field declared SEALED or secret keys (read from the models).
SEALED_KINDS = tuple(kind for kind, cls in MODELS.items()
                     if cls.names(Role.SEALED) or cls.secret_keys())


class Box(Protocol):
    def encrypt(self, plaintext: str, context: str) -> dict[str, Any]: ...
    def decrypt(self, envelope: dict[str, Any], context: str) -> str: ...


def context(kind: str, key: str, uid: str, version: int = VERSION) -> str:
    """The associated data of an envelope: what record (and incarnation) it belongs to."""
    if version == 1:
        return f"{kind}/{key}"
    # JSON, not "a/b/c": no choice of key or uid can make two contexts equal.
    return json.dumps(["commissaire-sealed", version, kind, key, uid], separators=(",", ":"))


def _seal(box: Box, kind: str, key: str, uid: str, plaintext: str) -> dict[str, Any]:
    return {"v": VERSION, **box.encrypt(plaintext, context(kind, key, uid))}


def _open(box: Box, kind: str, key: str, uid: str, envelope: object, format_1: bool) -> str:
    if not isinstance(envelope, dict):
        raise SecretsUnavailable(f"the sealed secret of {kind} {key} is not an envelope")
    version = envelope.get("v", 1)
    if version not in (1, VERSION):
        raise SecretsUnavailable(f"the sealed secret of {kind} {key} has an unknown "
                                 f"format {version!r}")
    if version == 1 and not format_1:
        raise SecretsUnavailable(
            f"the secret of {kind} {key} is sealed in format 1 (not bound to its "
            "incarnation), which this storage service no longer accepts "
            '("secrets-accept-format-1": false)')
    return box.decrypt(envelope, context(kind, key, uid, version))


def _uid(data: dict[str, Any]) -> str:
    uid = data.get("uid", "")
    return uid if isinstance(uid, str) else ""


# What a refusal says, by kind: the secret's name and how to get a sealed one again.
_REFUSALS = {
    "HostCreds": ("the credentials of host {key} are",
                  "delete the host and register it again"),
    "ContainerManagerConfig": ("the token of container manager {key} is",
                               "delete the container manager and create it again"),
}


def _unencrypted(kind: str, key: str) -> SecretsUnavailable:
    what, remedy = _REFUSALS.get(kind, ("the secret of " + kind + " {key} is", "write it again"))
    verb = "them" if what.endswith(" are") else "it"
    return SecretsUnavailable(f"{what.format(key=key)} stored unencrypted; refusing to use "
                              f"{verb} ({remedy})")


def seal(box: Box, kind: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a record: its SEALED fields together in one format-2
    envelope, and each secret key of a mapping field sealed in place (the roles
    declared on the model's fields say which)."""
    cls = model_class(kind)
    uid = _uid(data)
    stored = dict(data)
    whole = cls.names(Role.SEALED)
    if whole:
        secret = {name: stored.pop(name) for name in whole if name in stored}
        stored[SEALED] = _seal(box, kind, key, uid, json.dumps(secret))
    for name, secret_keys in cls.secret_keys().items():
        mapping = stored.get(name)
        if isinstance(mapping, dict) and any(k in mapping for k in secret_keys):
            stored[name] = {k: {SEALED: _seal(box, kind, key, uid, v)} if k in secret_keys else v
                            for k, v in mapping.items()}
    return stored


def unseal(box: Box, kind: str, key: str, stored: dict[str, Any],
           format_1: bool = True) -> dict[str, Any]:
    """The record as the service uses it: envelopes opened (SecretsUnavailable if one
    does not open, or if a secret is stored in clear). `format_1`: whether envelopes
    of the previous format still open (until every record is re-encrypted)."""
    cls = model_class(kind)
    uid = _uid(stored)
    record = stored
    whole = cls.names(Role.SEALED)
    if whole:
        if SEALED not in stored:
            raise _unencrypted(kind, key)
        try:
            secret = json.loads(_open(box, kind, key, uid, stored[SEALED], format_1))
        except ValueError:
            secret = None
        if not isinstance(secret, dict):
            raise SecretsUnavailable(f"the sealed credentials of host {key} are malformed")
        clear = {k: v for k, v in stored.items() if k not in whole and k != SEALED}
        # The key is the record's key, never the (unauthenticated) stored field.
        record = {**clear, cls.key_field: key, "uid": uid,
                  **{k: v for k, v in secret.items() if k in whole}}
    for name, secret_keys in cls.secret_keys().items():
        mapping = record.get(name)
        if isinstance(mapping, dict) and any(k in mapping for k in secret_keys):
            record = {**record, name: {k: _opened(box, kind, key, uid, v, format_1)
                                       if k in secret_keys else v
                                       for k, v in mapping.items()}}
    return record


def _opened(box: Box, kind: str, key: str, uid: str, value: object, format_1: bool) -> str:
    if not (isinstance(value, dict) and SEALED in value):
        raise _unencrypted(kind, key)
    return _open(box, kind, key, uid, value[SEALED], format_1)


def is_current(kind: str, stored: dict[str, Any], current_kid: str) -> bool:
    """True when the record's secrets are sealed in the current format under the
    current key (a secret in clear is not: re-encryption must report it)."""
    cls = model_class(kind)
    envelopes: list[Any] = []
    if cls.names(Role.SEALED):
        envelopes.append(stored.get(SEALED))
    for name, secret_keys in cls.secret_keys().items():
        mapping = stored.get(name)
        if isinstance(mapping, dict):
            envelopes += [mapping[k].get(SEALED) if isinstance(mapping[k], dict) else None
                          for k in secret_keys if k in mapping]
    return all(isinstance(found, dict) and found.get("v") == VERSION
               and found.get("kid") == current_kid for found in envelopes)
