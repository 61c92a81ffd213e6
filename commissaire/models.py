"""The records Commissaire keeps, with their validation and safe serialization.

A model knows its key field, the store collection it lives in, which of its
fields are secret, and the JSON schema of what a client may send to create it.
`to_dict()` is the full record (only the storage layer sees it); `to_safe_dict()`
drops secrets and is the only form ever logged, sent in a notification or
answered by a non-creds endpoint.
"""
from __future__ import annotations

import copy
import datetime as _dt
from typing import Any, ClassVar

from commissaire.errors import ValidationError
from commissaire.validation import (
    check_schema,
    validate_address,
    validate_base64,
    validate_name,
)

HOST_STATUSES = ("investigating", "bootstrapping", "active", "disassociated", "failed")
CLUSTER_STATUSES = ("ok", "degraded", "failed")
OPERATION_STATUSES = ("in_process", "finished", "failed", "aborted")
HOST_OPERATION_STATES = ("pending", "in_process", "done", "failed", "skipped")
NETWORK_TYPES = ("flannel_etcd", "flannel_server")
CONTAINER_MANAGER_TYPES = ("openshift", "kubernetes", "trivial")
OS_TYPES = ("atomic", "rhel", "centos", "fedora", "debian", "ubuntu", "lab", "")


def utcnow() -> str:
    """Timestamps as the seed shows them: ISO 8601, UTC, no offset suffix."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat()


class Model:
    """Base of every record. Subclasses declare fields and defaults."""

    kind: ClassVar[str] = ""
    key_field: ClassVar[str] = "name"
    collection: ClassVar[str] = ""
    # Field name -> default value (deep-copied for each instance).
    defaults: ClassVar[dict[str, Any]] = {}
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Fields computed at read time: shown to clients, never stored.
    computed_fields: ClassVar[tuple[str, ...]] = ()
    # Fields kept in the store but not shown to clients.
    internal_fields: ClassVar[tuple[str, ...]] = ()
    # JSON schema of a create (PUT) body.
    input_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    # Fields a client may echo back from a GET in a PUT body; ignored on input.
    read_only_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **data: Any) -> None:
        unknown = set(data) - set(self.defaults)
        if unknown:
            raise ValidationError(
                f"unknown field for {self.kind}", field=sorted(unknown)[0]
            )
        values = copy.deepcopy(self.defaults)
        values.update(data)
        self.__dict__["_data"] = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.defaults:
            raise AttributeError(f"{self.kind} has no field {name!r}")
        self._data[name] = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"{self.kind}({self.to_safe_dict()!r})"

    @property
    def key(self) -> str:
        return str(self._data[self.key_field])

    def to_dict(self) -> dict[str, Any]:
        """The full record, secrets included. Only for the storage layer."""
        return copy.deepcopy(self._data)

    def to_stored_dict(self) -> dict[str, Any]:
        """What the store keeps: everything but computed fields."""
        data = self.to_dict()
        for name in self.computed_fields:
            data.pop(name, None)
        return data

    def to_safe_dict(self) -> dict[str, Any]:
        """The record without secrets or internals: what clients and logs see."""
        data = self.to_dict()
        for name in self.secret_fields + self.internal_fields:
            data.pop(name, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        """Rebuild a record from stored data, ignoring fields this version dropped."""
        return cls(**{k: v for k, v in data.items() if k in cls.defaults})

    @classmethod
    def from_input(cls, key: str, body: Any) -> Model:
        """Validate a client's create body for the record named `key`."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        body = dict(body)
        echoed_key = body.pop(cls.key_field, None)
        if echoed_key is not None and echoed_key != key:
            raise ValidationError(
                f"does not match the {cls.key_field} in the URL ({key!r})", field=cls.key_field
            )
        for name in cls.read_only_fields:
            body.pop(name, None)
        check_schema(cls.input_schema, body)
        record = cls(**{cls.key_field: key, **body})
        record.validate()
        return record

    def validate(self) -> None:
        """Checks beyond the JSON schema. Subclasses extend."""
        validate_name(self.key, field=self.key_field)


def _object_schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING = {"type": "string"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


class Host(Model):
    """A managed host. Status fields are set by Commissaire, facts by investigation."""

    kind = "Host"
    key_field = "address"
    collection = "hosts"
    defaults = {
        "address": "",
        "status": "investigating",
        "os": "",
        "cpus": 0,
        "memory": 0,  # KiB, as the kernel reports MemTotal
        "space": 0,  # KiB free on the root filesystem
        "last_check": None,
        "source": "",
        "ssh_port": 22,
        "status_reason": "",
        "host_key_fingerprint": "",
        "ssh_host_key": "",  # the host key pinned at registration (public)
        "bootstrapped": False,  # set once bootstrap succeeded: the watcher checks only these
        # Kept by the storage service in the same transaction as the cluster's hostset.
        "cluster": "",
    }
    read_only_fields = (
        "status", "os", "cpus", "memory", "space", "last_check",
        "status_reason", "host_key_fingerprint", "ssh_host_key", "bootstrapped",
    )
    input_schema = _object_schema(
        {
            "ssh_priv_key": _STRING,
            "remote_user": _STRING,
            "cluster": _STRING,
            "ssh_port": _PORT,
            "source": _STRING,
            # The seed's curl walkthrough sends the address as "host".
            "host": _STRING,
        },
        required=("ssh_priv_key",),
    )

    def validate(self) -> None:
        validate_address(self.address, field="address")
        if self.status not in HOST_STATUSES:
            raise ValidationError("must be one of: " + ", ".join(HOST_STATUSES), field="status")

    @classmethod
    def input_to_records(cls, address: str, body: Any) -> tuple[Host, HostCreds, str]:
        """Split a host create body into the host, its credentials and its cluster."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        address = validate_address(address)
        body = dict(body)
        for alias in ("host", "address"):
            given = body.pop(alias, None)
            if given is not None and given != address:
                raise ValidationError(f"does not match the address in the URL ({address!r})", field=alias)
        for name in cls.read_only_fields:
            body.pop(name, None)
        check_schema(cls.input_schema, body)
        creds = HostCreds(
            address=address,
            ssh_priv_key=body.pop("ssh_priv_key"),
            remote_user=body.pop("remote_user", "root"),
        )
        creds.validate()
        cluster = body.pop("cluster", "") or ""
        if cluster:
            validate_name(cluster, field="cluster")
        host = cls(address=address, **body)
        host.validate()
        return host, creds, cluster


class HostCreds(Model):
    """What it takes to reach a host over SSH. Encrypted at rest, never logged."""

    kind = "HostCreds"
    key_field = "address"
    collection = "secrets/hosts"
    defaults = {"address": "", "ssh_priv_key": "", "remote_user": "root"}
    secret_fields = ("ssh_priv_key",)

    def validate(self) -> None:
        validate_address(self.address, field="address")
        validate_base64(self.ssh_priv_key, field="ssh_priv_key")
        if not isinstance(self.remote_user, str) or not self.remote_user.strip():
            raise ValidationError("must be a non-empty user name", field="remote_user")
        if any(c.isspace() for c in self.remote_user) or self.remote_user.startswith("-"):
            raise ValidationError("must be a plain user name", field="remote_user")


class Cluster(Model):
    """A group of like hosts. `hostset` holds the members; status is computed."""

    kind = "Cluster"
    collection = "clusters"
    defaults = {
        "name": "",
        "status": "ok",
        "network": "default",
        "container_manager": "",
        "hosts": {"total": 0, "available": 0, "unavailable": 0},
        "hostset": [],
    }
    computed_fields = ("status", "hosts")
    internal_fields = ("hostset",)
    read_only_fields = ("status", "hosts", "hostset")
    input_schema = _object_schema(
        {
            "network": _STRING,
            "container_manager": {"type": ["string", "null"]},
            # Removed in seed 0.1.0 in favour of container_manager; tolerated.
            "type": _STRING,
        }
    )

    @classmethod
    def from_input(cls, key: str, body: Any) -> Model:
        if isinstance(body, dict) and "type" in body:
            body = {k: v for k, v in body.items() if k != "type"}
        if isinstance(body, dict) and body.get("container_manager") is None:
            body = {k: v for k, v in body.items() if k != "container_manager"}
        return super().from_input(key, body)

    def validate(self) -> None:
        super().validate()
        validate_name(self.network, field="network")
        if self.container_manager:
            validate_name(self.container_manager, field="container_manager")

    def with_host_statuses(self, statuses: list[str]) -> Cluster:
        """Fill the computed fields from the statuses of the member hosts."""
        total = len(statuses)
        # Without a container manager, bootstrapped hosts are "disassociated" by
        # design (seed status list): they are the available ones of such a cluster.
        healthy = ("active",) if self.container_manager else ("active", "disassociated")
        available = sum(1 for s in statuses if s in healthy)
        self.hosts = {"total": total, "available": available, "unavailable": total - available}
        if total == 0 or available == total:
            self.status = "ok"
        elif available == 0:
            self.status = "failed"
        else:
            self.status = "degraded"
        return self


class Network(Model):
    """Network configuration handed to flannel on the hosts of a cluster."""

    kind = "Network"
    collection = "networks"
    defaults = {"name": "", "type": "flannel_etcd", "options": {}}
    input_schema = _object_schema(
        {"type": {"enum": list(NETWORK_TYPES)}, "options": {"type": "object"}}
    )

    def validate(self) -> None:
        super().validate()
        if self.type == "flannel_server":
            address = self.options.get("address")
            if not isinstance(address, str) or ":" not in address:
                raise ValidationError(
                    "is required for flannel_server and must be host:port", field="options.address"
                )
            host, _, port = address.rpartition(":")
            validate_address(host.strip("[]"), field="options.address")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValidationError("must end in a port number", field="options.address")


class ContainerManagerConfig(Model):
    """How to reach a Kubernetes/OpenShift API (or `trivial`: no manager)."""

    kind = "ContainerManagerConfig"
    collection = "container_managers"
    defaults = {"name": "", "type": "", "options": {}}
    # Options that are credentials: encrypted at rest, hidden from GET.
    secret_options: ClassVar[tuple[str, ...]] = ("token",)
    input_schema = _object_schema(
        {"type": {"enum": list(CONTAINER_MANAGER_TYPES)}, "options": {"type": "object"}},
        required=("type",),
    )

    def validate(self) -> None:
        super().validate()
        if self.type in ("kubernetes", "openshift"):
            url = self.options.get("server_url") or self.options.get("apiserver")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValidationError(
                    "an http(s) URL of the API server is required for "
                    f"{self.type} (options.server_url or options.apiserver)",
                    field="options.server_url",
                )
        token = self.options.get("token")
        if token is not None and not isinstance(token, str):
            raise ValidationError("must be a string", field="options.token")

    def to_safe_dict(self) -> dict[str, Any]:
        data = super().to_safe_dict()
        for name in self.secret_options:
            if name in data["options"]:
                data["options"][name] = "******"
        return data


class ClusterOperation(Model):
    """A rolling operation over the hosts of a cluster (restart/upgrade/deploy).

    `hosts` holds the per-host record (state, timestamps, reason, events); the
    seed's lists (`restarted`, `in_process`, ...) are derived from it.
    """

    key_field = "name"
    operation: ClassVar[str] = ""
    done_list: ClassVar[str] = ""
    defaults = {
        "name": "",
        "status": "in_process",
        "started_at": None,
        "finished_at": None,
        "hosts": {},
        "options": {},
        "reason": "",
    }
    input_schema = _object_schema(
        {
            "max_unavailable": {
                "oneOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "pattern": r"^(100|[1-9][0-9]?)%$"},
                ]
            },
            "failure_tolerance": {"type": "integer", "minimum": 0},
            "drain": {"type": "boolean"},
            "drain_timeout": {"type": "integer", "minimum": 1},
        }
    )
    read_only_fields = ("status", "in_process", "started_at", "finished_at", "hosts", "reason")

    @classmethod
    def from_input(cls, key: str, body: Any) -> Model:
        """The PUT body holds the rolling options (and, for a deploy, the version)."""
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        ignored = set(cls.read_only_fields) | {cls.done_list}
        body = {k: v for k, v in body.items() if k not in ignored}
        echoed = body.pop("name", None)
        if echoed is not None and echoed != key:
            raise ValidationError(f"does not match the cluster in the URL ({key!r})", field="name")
        check_schema(cls.input_schema, body)
        top = {k: body.pop(k) for k in list(body) if k in cls.defaults}
        record = cls(name=key, options=body, **top)
        record.validate()
        return record

    def to_safe_dict(self) -> dict[str, Any]:
        data = super().to_safe_dict()
        hosts = data.get("hosts", {})
        data[self.done_list] = sorted(a for a, h in hosts.items() if h.get("state") == "done")
        data["in_process"] = sorted(a for a, h in hosts.items() if h.get("state") == "in_process")
        return data


class ClusterRestart(ClusterOperation):
    kind = "ClusterRestart"
    operation = "restart"
    done_list = "restarted"
    collection = "cluster_ops/restart"


class ClusterUpgrade(ClusterOperation):
    kind = "ClusterUpgrade"
    operation = "upgrade"
    done_list = "upgraded"
    collection = "cluster_ops/upgrade"


class ClusterDeploy(ClusterOperation):
    kind = "ClusterDeploy"
    operation = "deploy"
    done_list = "deployed"
    collection = "cluster_ops/deploy"
    defaults = {**ClusterOperation.defaults, "version": ""}
    input_schema = _object_schema(
        {**ClusterOperation.input_schema["properties"], "version": {"type": "string", "minLength": 1}},
        required=("version",),
    )


class OperationLock(Model):
    """Who runs an operation: held under a store lease, gone when its holder dies."""

    kind = "OperationLock"
    collection = "locks/cluster_ops"
    defaults = {"name": "", "owner": "", "lease": 0, "acquired_at": None}

    def validate(self) -> None:
        return None


class HostStatus(Model):
    """The combined status of a host and of its node in the container manager."""

    kind = "HostStatus"
    key_field = "address"
    collection = ""
    defaults = {"address": "", "type": "host_only", "host": {}, "container_manager": {}}

    def to_safe_dict(self) -> dict[str, Any]:
        data = super().to_safe_dict()
        data.pop("address", None)
        return data


OPERATIONS: dict[str, type[ClusterOperation]] = {
    cls.operation: cls for cls in (ClusterRestart, ClusterUpgrade, ClusterDeploy)
}

# Every stored model by kind: the storage service and bus use these names.
MODELS: dict[str, type[Model]] = {
    cls.kind: cls
    for cls in (
        Host, HostCreds, Cluster, Network, ContainerManagerConfig,
        ClusterRestart, ClusterUpgrade, ClusterDeploy, OperationLock,
    )
}


def model_class(kind: str) -> type[Model]:
    try:
        return MODELS[kind]
    except KeyError:
        raise ValidationError(f"unknown model kind {kind!r}", field="kind") from None
