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
from commissaire.states import (  # noqa: F401  (re-exported: the records' vocabulary)
    CLUSTER_STATUSES,
    HOST_OPERATION_STATES,
    HOST_STATUSES,
    OPERATION_STATUSES,
    ClusterState,
    HostOperationState,
    HostState,
    OperationState,
)
from commissaire.validation import (
    ABS_PATH,
    ADDRESS,
    ADDRESS_MAX,
    BASE64,
    HOST_PORT,
    NAME,
    PEM_BUNDLE,
    PERCENT,
    PRIVATE_KEY_MAX,
    STORE_SOURCE,
    TOKEN,
    URL,
    URL_MAX,
    USER_NAME,
    VERSION,
    check_schema,
    string,
    validate_address,
    validate_base64,
    validate_name,
    validate_pattern,
)

NETWORK_TYPES = ("flannel_etcd", "flannel_server")
CONTAINER_MANAGER_TYPES = ("openshift", "kubernetes", "trivial")
# The container runtime a cluster's hosts get; "" = the OS profile's default for the
# cluster's container manager (playbooks/os/<os>.yml).
CONTAINER_RUNTIMES = ("", "docker", "containerd", "cri-o")
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
        if body is None:  # no body at all: every field takes its default
            body = {}
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        check_schema(cls.input_schema, body)
        body = dict(body)
        echoed_key = body.pop(cls.key_field, None)
        if echoed_key is not None and echoed_key != key:
            raise ValidationError(
                f"does not match the {cls.key_field} in the URL ({key!r})", field=cls.key_field
            )
        for name in cls.read_only_fields:
            body.pop(name, None)
        record = cls(**{cls.key_field: key, **body})
        record.validate()
        return record

    def validate(self) -> None:
        """Checks beyond the JSON schema. Subclasses extend."""
        validate_name(self.key, field=self.key_field)


def _object_schema(properties: dict[str, Any], required: tuple[str, ...] = (),
                   read_only: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object: only the listed fields. `read_only` fields are those a client
    may echo back from a GET; the server ignores them (OpenAPI `readOnly`)."""
    echoed = {name: {"readOnly": True, "description": "shown by GET; ignored on input"}
              for name in read_only if name not in properties}
    return {
        "type": "object",
        "properties": {**properties, **echoed},
        "required": list(required),
        "additionalProperties": False,
    }


# The schemas below are the API's allow-lists: the server validates request bodies
# with them and the OpenAPI document shows them, so the two cannot drift. A
# `description` is what a 400 says the value "must be".
NAME_SCHEMA = string(NAME, description="1-63 letters, digits, '_', '.' or '-', "
                     "starting with a letter or digit")
ADDRESS_SCHEMA = string(ADDRESS, ADDRESS_MAX, description="an IPv4 address, an IPv6 address "
                        "(no zone id) or a DNS name (its last label starting with a letter)")
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
# Base64 of PRIVATE_KEY_MAX bytes: the length a schema can say (decodes to <= 16386).
_KEY_B64_MAX = 4 * -(-PRIVATE_KEY_MAX // 3)
_PRIVATE_KEY = string(BASE64, _KEY_B64_MAX, minLength=4, description=(
    "the private key in base64 without newlines (base64 -w0), at most "
    f"{_KEY_B64_MAX} characters ({PRIVATE_KEY_MAX // 1024} KiB of key)"))
_USER = string(USER_NAME, description="a POSIX user name: a lowercase letter or '_', then "
               "up to 31 lowercase letters, digits, '_', '.' or '-'")
_URL = string(URL, URL_MAX, description="an http:// or https:// URL: host, optional port "
              "(1-65535) and path of letters, digits and ._~-; no user, query or fragment")
_ABS_PATH = string(ABS_PATH, 4096, description="an absolute path of letters, digits, '.', "
                   "'_' and '-', without '.' or '..' segments")
_ECHOED_KEY = "must equal the {} in the URL; shown by GET"


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
        # The record's incarnation: a uuid4 hex the storage service sets at creation
        # (never from the API); services name it in updates. "" = stored before uids.
        "uid": "",
    }
    read_only_fields = (
        "status", "os", "cpus", "memory", "space", "last_check",
        "status_reason", "host_key_fingerprint", "ssh_host_key", "bootstrapped", "uid",
    )
    input_schema = _object_schema(
        {
            "ssh_priv_key": _PRIVATE_KEY,
            "remote_user": _USER,
            "cluster": string(f"(?:{NAME})?", description="the name of an existing cluster, "
                              "or empty for none"),
            "ssh_port": _PORT,
            "source": string(f"(?:{STORE_SOURCE})?", description="the short name of a "
                             "configured storage handler, or empty for the default"),
            # The seed's curl walkthrough sends the address as "host".
            "host": {**ADDRESS_SCHEMA, "readOnly": True,
                     "description": _ECHOED_KEY.format("address")},
            "address": {**ADDRESS_SCHEMA, "readOnly": True,
                        "description": _ECHOED_KEY.format("address")},
        },
        required=("ssh_priv_key",),
        read_only=read_only_fields,
    )

    def validate(self) -> None:
        validate_address(self.address, field="address")
        if self.status not in HOST_STATUSES:
            raise ValidationError("must be one of: " + ", ".join(HOST_STATUSES), field="status")
        port = self.ssh_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValidationError("must be an integer from 1 to 65535", field="ssh_port")
        if self.source:
            validate_pattern(self.source, STORE_SOURCE, "source", "a storage handler's name")
        if self.cluster:
            validate_name(self.cluster, field="cluster")

    @classmethod
    def input_to_records(cls, address: str, body: Any) -> tuple[Host, HostCreds, str]:
        """Split a host create body into the host, its credentials and its cluster."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        address = validate_address(address)
        check_schema(cls.input_schema, body)
        body = dict(body)
        for alias in ("host", "address"):
            given = body.pop(alias, None)
            if given is not None and validate_address(given, alias) != address:
                raise ValidationError(f"does not match the address in the URL ({address!r})", field=alias)
        for name in cls.read_only_fields:
            body.pop(name, None)
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
    # uid: the incarnation of the host these belong to (bound into the encryption).
    defaults = {"address": "", "ssh_priv_key": "", "remote_user": "root", "uid": ""}
    secret_fields = ("ssh_priv_key",)

    def validate(self) -> None:
        validate_address(self.address, field="address")
        validate_base64(self.ssh_priv_key, field="ssh_priv_key")
        if len(self.ssh_priv_key) > _KEY_B64_MAX:
            raise ValidationError(f"must be at most {_KEY_B64_MAX} characters",
                                  field="ssh_priv_key")
        # The user name reaches the inventory and SSH: a POSIX name, matched in full.
        validate_pattern(self.remote_user, USER_NAME, "remote_user", _USER["description"])


class Cluster(Model):
    """A group of like hosts. `hostset` holds the members; status is computed."""

    kind = "Cluster"
    collection = "clusters"
    defaults = {
        "name": "",
        "status": "ok",
        "network": "default",
        "container_manager": "",
        # "" (stored before the field existed, or not given): the profile's default.
        "container_runtime": "",
        "hosts": {"total": 0, "available": 0, "unavailable": 0},
        "hostset": [],
    }
    computed_fields = ("status", "hosts")
    internal_fields = ("hostset",)
    read_only_fields = ("status", "hosts", "hostset")
    input_schema = _object_schema(
        {
            "name": {**NAME_SCHEMA, "readOnly": True, "description": _ECHOED_KEY.format("name")},
            "network": {**NAME_SCHEMA, "description": "the name of an existing network "
                        "(default: default)"},
            "container_manager": {
                "anyOf": [string(f"(?:{NAME})?"), {"type": "null"}],
                "description": "the name of an existing container manager; empty or null "
                "for none"},
            "container_runtime": string(
                "(?:" + "|".join(r for r in CONTAINER_RUNTIMES if r) + ")?",
                description="docker, containerd or cri-o, or empty for the OS profile's "
                "default; with a kubernetes container manager containerd or cri-o, with "
                "openshift cri-o"),
            # Removed in seed 0.1.0 in favour of container_manager; tolerated.
            "type": {"readOnly": True, "description": "removed in 0.1.0; ignored"},
        },
        read_only=read_only_fields,
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
        elif self.container_manager != "":
            raise ValidationError("must be a name or empty", field="container_manager")
        if self.container_runtime not in CONTAINER_RUNTIMES:
            raise ValidationError("must be docker, containerd or cri-o, or empty for the OS "
                                  "profile's default", field="container_runtime")

    def check_runtime(self, manager_type: str) -> None:
        """Whether the runtime suits the type of the cluster's container manager (known
        only where both are read: the storage service, in the creating transaction).
        Without a manager, or with `trivial`, any runtime does."""
        runtime = self.container_runtime
        if manager_type == "openshift" and runtime not in ("", "cri-o"):
            raise ValidationError(
                ("Kubernetes removed dockershim in 1.24, and " if runtime == "docker" else "")
                + "OpenShift nodes run CRI-O only: use cri-o (or leave it empty)",
                field="container_runtime")
        if manager_type == "kubernetes" and runtime == "docker":
            raise ValidationError("Kubernetes removed dockershim in 1.24: use containerd or "
                                  "cri-o", field="container_runtime")

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
    # The options each network type takes, typed: they end up in files on the hosts.
    _server_options = _object_schema(
        {"address": string(HOST_PORT, 300, description="host:port of the flannel server "
                           "(an IPv6 address in brackets), port 1-65535")},
        required=("address",))
    _etcd_options = _object_schema({
        "etcd_server_url": string(f"{URL}(?:,{URL}){{0,15}}", URL_MAX, description=(
            "one or more comma-separated http(s) URLs of etcd (default: the store's)")),
        "flannel_key": {**_ABS_PATH, "maxLength": 256,
                        "description": "the etcd key prefix of flannel's configuration "
                        "(default /atomic.io/network): " + _ABS_PATH["description"]},
    })
    input_schema = {
        **_object_schema(
            {"name": {**NAME_SCHEMA, "readOnly": True,
                      "description": _ECHOED_KEY.format("name")},
             "type": {"enum": list(NETWORK_TYPES), "description": "default flannel_etcd"},
             "options": {"type": "object"}}),
        # flannel_server needs options.address; flannel_etcd (the default) takes the
        # etcd options. Said here rather than in code, so the document says it too.
        "if": {"properties": {"type": {"const": "flannel_server"}}, "required": ["type"]},
        "then": {"properties": {"options": _server_options}, "required": ["options"]},
        "else": {"properties": {"options": _etcd_options}},
    }

    def validate(self) -> None:
        super().validate()
        check_schema(self.input_schema, {"type": self.type, "options": self.options})


class ContainerManagerConfig(Model):
    """How to reach a Kubernetes/OpenShift API (or `trivial`: no manager)."""

    kind = "ContainerManagerConfig"
    collection = "container_managers"
    # uid: the incarnation, set by the storage service (bound into the token's encryption).
    defaults = {"name": "", "type": "", "options": {}, "uid": ""}
    internal_fields = ("uid",)
    read_only_fields = ("uid",)
    # Options that are credentials: encrypted at rest, hidden from GET.
    secret_options: ClassVar[tuple[str, ...]] = ("token",)
    _options = {
        **_object_schema({
            "server_url": {**_URL, "description": "the API server: " + _URL["description"]},
            "apiserver": {**_URL, "description": "the seed's name of server_url"},
            "token": string(f"(?:{TOKEN})?", 8300, description="a bearer token: letters, "
                            "digits and ._~+/- with optional '=' padding (hidden by GET)"),
            "certificate_authority": {
                "anyOf": [_ABS_PATH, string(PEM_BUNDLE, 262144)],
                "description": "a CA bundle: its absolute path on the containermgr host "
                "(letters, digits, '.', '_', '-') or PEM certificates"},
            "insecure_skip_verify": {"type": "boolean"},
            "client_certificate": _ABS_PATH,
            "client_key": _ABS_PATH,
            "request_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
        }),
        "dependentRequired": {"client_key": ["client_certificate"]},
    }
    input_schema = {
        **_object_schema(
            {"name": {**NAME_SCHEMA, "readOnly": True,
                      "description": _ECHOED_KEY.format("name")},
             "type": {"enum": list(CONTAINER_MANAGER_TYPES)},
             "options": _options},
            required=("type",), read_only=read_only_fields),
        # kubernetes/openshift need the API server's URL (trivial uses no option).
        "if": {"properties": {"type": {"enum": ["kubernetes", "openshift"]}}},
        "then": {"properties": {"options": {
            "anyOf": [{"required": ["server_url"]}, {"required": ["apiserver"]}]}},
            "required": ["options"]},
    }

    def validate(self) -> None:
        super().validate()
        check_schema(self.input_schema, {"type": self.type, "options": self.options})

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
    read_only_fields = ("status", "in_process", "started_at", "finished_at", "hosts", "reason")
    # The rolling options, bounded.
    option_schemas: ClassVar[dict[str, Any]] = {
        "max_unavailable": {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 100000},
                string(PERCENT, description="a percentage from 1% to 100%"),
            ],
            "description": "hosts at a time: a count (1-100000) or a percentage (1%-100%)",
        },
        "failure_tolerance": {"type": "integer", "minimum": 0, "maximum": 100000},
        "drain": {"type": "boolean"},
        "drain_timeout": {"type": "integer", "minimum": 1, "maximum": 86400},
    }
    input_schema = _object_schema(
        {"name": {**NAME_SCHEMA, "readOnly": True, "description": _ECHOED_KEY.format("name")},
         **option_schemas},
        read_only=read_only_fields,
    )

    @classmethod
    def from_input(cls, key: str, body: Any) -> Model:
        """The PUT body holds the rolling options (and, for a deploy, the version)."""
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        check_schema(cls.input_schema, body)
        ignored = set(cls.read_only_fields) | {cls.done_list}
        body = {k: v for k, v in body.items() if k not in ignored}
        echoed = body.pop("name", None)
        if echoed is not None and echoed != key:
            raise ValidationError(f"does not match the cluster in the URL ({key!r})", field="name")
        top = {k: body.pop(k) for k in list(body) if k in cls.defaults}
        record = cls(name=key, options=body, **top)
        record.validate()
        return record

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.options, dict):
            raise ValidationError("must be an object", field="options")
        check_schema(_object_schema(self.option_schemas), self.options)

    def to_safe_dict(self) -> dict[str, Any]:
        data = super().to_safe_dict()
        hosts = data.get("hosts", {})
        data[self.done_list] = sorted(a for a, h in hosts.items() if h.get("state") == "done")
        data["in_process"] = sorted(a for a, h in hosts.items() if h.get("state") == "in_process")
        return data


def _operation_schema(done_list: str, extra: dict[str, Any] | None = None,
                      required: tuple[str, ...] = ()) -> dict[str, Any]:
    return _object_schema(
        {"name": {**NAME_SCHEMA, "readOnly": True, "description": _ECHOED_KEY.format("name")},
         **ClusterOperation.option_schemas, **(extra or {})},
        required=required, read_only=(*ClusterOperation.read_only_fields, done_list))


class ClusterRestart(ClusterOperation):
    kind = "ClusterRestart"
    operation = "restart"
    done_list = "restarted"
    collection = "cluster_ops/restart"
    input_schema = _operation_schema(done_list)


class ClusterUpgrade(ClusterOperation):
    kind = "ClusterUpgrade"
    operation = "upgrade"
    done_list = "upgraded"
    collection = "cluster_ops/upgrade"
    input_schema = _operation_schema(done_list)


class ClusterDeploy(ClusterOperation):
    kind = "ClusterDeploy"
    operation = "deploy"
    done_list = "deployed"
    collection = "cluster_ops/deploy"
    defaults = {**ClusterOperation.defaults, "version": ""}
    _version = string(VERSION, description="1-128 letters, digits and ._:+~-, starting "
                      "with a letter or digit (an OSTree version or a package version)")
    input_schema = _operation_schema(done_list, {"version": _version}, required=("version",))

    def validate(self) -> None:
        super().validate()
        # The version reaches rpm-ostree/package commands on the hosts.
        validate_pattern(self.version, VERSION, "version", self._version["description"])


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
