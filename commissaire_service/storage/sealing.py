"""Sealing of secret fields before they reach a store handler.

HostCreds are sealed whole (key and remote user); a container manager's token
is sealed in place. Envelope format 2 (`"v": 2`) binds the record's kind, key
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

SEALED = "__sealed__"
VERSION = 2  # the format every seal() writes
SEALED_KINDS = ("HostCreds", "ContainerManagerConfig")


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


def _open(box: Box, kind: str, key: str, uid: str, envelope: Any, format_1: bool) -> str:
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


def seal(box: Box, kind: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a record: secrets replaced by format-2 envelopes."""
    uid = _uid(data)
    if kind == "HostCreds":
        secret = {k: v for k, v in data.items() if k not in ("address", "uid")}
        return {"address": data["address"], "uid": uid,
                SEALED: _seal(box, kind, key, uid, json.dumps(secret))}
    if kind == "ContainerManagerConfig" and "token" in data.get("options", {}):
        options = dict(data["options"])
        options["token"] = {SEALED: _seal(box, kind, key, uid, options["token"])}
        return {**data, "options": options}
    return data


def unseal(box: Box, kind: str, key: str, stored: dict[str, Any],
           format_1: bool = True) -> dict[str, Any]:
    """The record as the service uses it: envelopes opened (SecretsUnavailable if one
    does not open, or if a secret is stored in clear). `format_1`: whether envelopes
    of the previous format still open (until every record is re-encrypted)."""
    uid = _uid(stored)
    if kind == "HostCreds":
        if SEALED not in stored:
            raise SecretsUnavailable(
                f"the credentials of host {key} are stored unencrypted; refusing to use "
                f"them (delete the host and register it again)")
        try:
            secret = json.loads(_open(box, kind, key, uid, stored[SEALED], format_1))
        except ValueError:
            secret = None
        if not isinstance(secret, dict):
            raise SecretsUnavailable(f"the sealed credentials of host {key} are malformed")
        secret = {k: v for k, v in secret.items() if k not in ("address", "uid")}
        # The address is the record's key, never the (unauthenticated) stored field.
        return {"address": key, "uid": uid, **secret}
    options = stored.get("options") if kind == "ContainerManagerConfig" else None
    if isinstance(options, dict) and "token" in options:
        token = options["token"]
        if not (isinstance(token, dict) and SEALED in token):
            raise SecretsUnavailable(
                f"the token of container manager {key} is stored unencrypted; refusing "
                "to use it (delete the container manager and create it again)")
        return {**stored, "options": {**options,
                                      "token": _open(box, kind, key, uid, token[SEALED],
                                                     format_1)}}
    return stored


def is_current(kind: str, stored: dict[str, Any], current_kid: str) -> bool:
    """True when the record's secrets are sealed in the current format under the
    current key (a secret in clear is not: re-encryption must report it)."""
    if kind == "HostCreds":
        found: Any = stored.get(SEALED)
    elif kind == "ContainerManagerConfig" and "token" in (stored.get("options") or {}):
        token = stored["options"]["token"]
        found = token.get(SEALED) if isinstance(token, dict) else None
    else:
        return True
    return isinstance(found, dict) and found.get("v") == VERSION \
        and found.get("kid") == current_kid
