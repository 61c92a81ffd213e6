"""What successful answers look like: the response schemas of the OpenAPI document.

Each lists the fields a client can rely on, with their types; records may gain
fields in later versions, so objects stay open (`additionalProperties` allowed).
"""
from __future__ import annotations

from typing import Any

from commissaire.models import (
    CLUSTER_STATUSES,
    CONTAINER_RUNTIMES,
    HOST_OPERATION_STATES,
    HOST_STATUSES,
    NETWORK_TYPES,
    OPERATION_STATUSES,
    TOKEN_ROLES,
)

_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_TIME: dict[str, Any] = {"type": ["string", "null"], "description": "ISO 8601, UTC"}


def _object(properties: dict[str, Any], required: tuple[str, ...] | None = None
            ) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required)}


HOST = _object({
    "address": _STR, "status": {"enum": list(HOST_STATUSES)}, "os": _STR,
    "cpus": _INT, "memory": {**_INT, "description": "KiB"},
    "space": {**_INT, "description": "KiB free on /"}, "last_check": _TIME,
    "source": _STR, "ssh_port": _INT, "status_reason": _STR,
    "host_key_fingerprint": _STR, "ssh_host_key": _STR, "bootstrapped": {"type": "boolean"},
    "cluster": _STR,
}, required=("address", "status", "cluster", "ssh_port"))
HOSTS = {"type": "array", "items": HOST}
CREDS = _object({"ssh_priv_key": _STR, "remote_user": _STR})
HOST_STATUS = _object({
    "type": {"enum": ["host_only", "host_and_container_manager"]},
    "host": _object({"status": {"enum": list(HOST_STATUSES)}, "last_check": _TIME,
                     "status_reason": _STR}),
    "container_manager": {"type": "object"},
})
NAMES = {"type": "array", "items": _STR}
CLUSTER = _object({
    "name": _STR, "status": {"enum": list(CLUSTER_STATUSES)}, "network": _STR,
    "container_manager": _STR,
    "container_runtime": {"enum": list(CONTAINER_RUNTIMES),
                          "description": "empty: the OS profile's default"},
    "hosts": _object({"total": _INT, "available": _INT, "unavailable": _INT}),
})
NETWORK = _object({"name": _STR, "type": {"enum": list(NETWORK_TYPES)},
                   "options": {"type": "object"}})
CONTAINER_MANAGER = _object({
    "name": _STR, "type": _STR,
    "options": {"type": "object", "properties": {"token": {"const": "******"}},
                "description": "as given, the token hidden"}})
_HOST_PROGRESS = _object({
    "state": {"enum": list(HOST_OPERATION_STATES)}, "started_at": _TIME, "finished_at": _TIME,
    "reason": _STR,
    "events": {"type": "array", "items": _object({"at": _STR, "event": _STR})},
}, required=("state",))


def operation(done_list: str) -> dict[str, Any]:
    """A rolling operation's progress (restart/upgrade/deploy)."""
    return _object({
        "name": _STR, "status": {"enum": list(OPERATION_STATUSES)},
        "started_at": _TIME, "finished_at": _TIME, "reason": _STR,
        "options": {"type": "object"},
        "hosts": {"type": "object", "additionalProperties": _HOST_PROGRESS,
                  "description": "per host address"},
        done_list: NAMES, "in_process": NAMES,
    }, required=("name", "status", "hosts", done_list, "in_process"))


_CHECK = _object({"status": {"enum": ["ok", "failed", "unknown"]}}, required=("status",))
STATUS = _object({
    "status": {"enum": ["ok", "degraded", "failed"]},
    "server": _object({"status": _STR, "started_at": _STR}),
    "bus": _CHECK, "store": _CHECK,
    "services": {"type": "object", "additionalProperties": _CHECK},
})


EVENT = _object({
    "id": {**_STR, "description": "time-ordered: microseconds since the epoch, '-', random"},
    "at": _TIME,
    "actor": _object({"name": _STR, "method": {
        **_STR, "description": "how they authenticated; service for a service, none for "
        "anonymous"}}),
    "source": {**_STR, "description": "the client's address"},
    "request_id": _STR,
    "action": _STR,
    "object": _object({"kind": _STR, "key": _STR}),
    "fields": {"type": "object", "description": "the fields given, secrets as ******"},
    "outcome": _object({"status": {**_INT, "description": "the HTTP status"},
                        "error": {**_STR, "description": "the error's description"}}),
})
EVENTS = {"type": "array", "items": EVENT}


TOKEN = _object({
    "name": _STR, "role": {"enum": list(TOKEN_ROLES)},
    "clusters": {**NAMES, "description": "the clusters it may act on; empty: all"},
    "expires_at": {**_TIME, "description": "ISO 8601, UTC; null: never"},
    "id": {**_STR, "description": "public: the part of the token string that finds it"},
    "created_at": _TIME, "created_by": _STR,
    "last_used_at": {**_TIME, "description": "recorded at most once a minute"},
}, required=("name", "role", "clusters", "expires_at", "id", "created_at", "last_used_at"))
TOKENS = {"type": "array", "items": TOKEN}
TOKEN_CREATED = {**TOKEN, "properties": {**TOKEN["properties"], "token": {
    **_STR, "description": "the token (cmt_...): shown this once, never stored"}},
    "required": [*TOKEN["required"], "token"]}
