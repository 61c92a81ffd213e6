"""Sealing of secret fields before they reach a store handler.

HostCreds are sealed whole (key and remote user); a container manager's token
is sealed in place. Each envelope is bound to its record ("HostCreds/10.0.0.1"),
so a sealed value copied onto another record does not decrypt.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

SEALED = "__sealed__"


class Box(Protocol):
    def encrypt(self, plaintext: str, context: str) -> dict[str, Any]: ...
    def decrypt(self, envelope: dict[str, Any], context: str) -> str: ...


def seal(box: Box, kind: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a record: secrets replaced by envelopes."""
    context = f"{kind}/{key}"
    if kind == "HostCreds":
        secret = {k: v for k, v in data.items() if k != "address"}
        return {"address": data["address"], SEALED: box.encrypt(json.dumps(secret), context)}
    if kind == "ContainerManagerConfig" and "token" in data.get("options", {}):
        options = dict(data["options"])
        options["token"] = {SEALED: box.encrypt(options["token"], context)}
        return {**data, "options": options}
    return data


def unseal(box: Box, kind: str, key: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The record as the service uses it: envelopes opened."""
    context = f"{kind}/{key}"
    if kind == "HostCreds" and SEALED in stored:
        secret = json.loads(box.decrypt(stored[SEALED], context))
        return {"address": stored["address"], **secret}
    token = stored.get("options", {}).get("token") if kind == "ContainerManagerConfig" else None
    if isinstance(token, dict) and SEALED in token:
        options = {**stored["options"], "token": box.decrypt(token[SEALED], context)}
        return {**stored, "options": options}
    return stored
