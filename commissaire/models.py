"""The records Commissaire keeps, with their validation and safe serialization.

Each record is an attrs class (slotted, typed: see the README's dependency
table). What a field is for is declared on the field, once, as a `Role`: the
serialization, the sealing of secrets at rest, the storage service's state
updates, the input validation and the OpenAPI document all read that
declaration. `to_dict()` is the full record (only the storage layer sees it);
`to_safe_dict()` drops secrets and internals and is the only form ever logged,
sent in a notification or answered by a non-creds endpoint.
"""
from __future__ import annotations

import copy
import datetime as _dt
import enum
from collections.abc import Callable
from typing import Any, ClassVar, Self

import attrs

from commissaire.apitokens import ID as TOKEN_ID
from commissaire.errors import Conflict, ValidationError
from commissaire.identity import Role as CallerRole
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
    UTC_TIME,
    VERSION,
    check_schema,
    full_match,
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


class Role(enum.Flag):
    """What a field is for, declared on the field (`declared(...)`)."""

    PLAIN = 0
    #: Encrypted at rest (the storage layer seals it before any store handler sees it).
    SEALED = enum.auto()
    #: Never logged, notified or shown to clients (a creds endpoint aside).
    HIDDEN = enum.auto()
    #: Shown by GET; a client may echo it back in a PUT, which ignores it.
    READ_ONLY = enum.auto()
    #: The services record it (storage.update_host).
    RECORDED = enum.auto()
    #: Filled at read time, never stored.
    DERIVED = enum.auto()
    #: A credential, or what verifies one: masked in the activity stream wherever a
    #: field of its name appears (commissaire.activity.redact).
    CREDENTIAL = enum.auto()

    # What the records declare:
    SECRET = SEALED | HIDDEN | CREDENTIAL
    #: What verifies a credential (a token's digest): stored, never shown or recorded.
    VERIFIER = HIDDEN | CREDENTIAL
    #: Learned by the services; clients cannot set it.
    STATE = READ_ONLY | RECORDED
    COMPUTED = READ_ONLY | DERIVED
    #: Stored, never shown.
    INTERNAL = HIDDEN


_ROLE = "commissaire.role"
_SECRET_KEYS = "commissaire.secret_keys"


def declared(default: Any, role: Role = Role.PLAIN, *,
             secret_keys: tuple[str, ...] = ()) -> Any:
    """A record field with its role. Mutable defaults are copied for each record.
    `secret_keys`: keys of a mapping field that are secrets (sealed in place at
    rest, masked when shown)."""
    metadata = {_ROLE: role, _SECRET_KEYS: secret_keys}
    if isinstance(default, (dict, list)):
        return attrs.field(factory=_copier(default), metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def _copier(default: Any) -> Callable[[], Any]:
    return lambda: copy.deepcopy(default)


def _copied(value: Any) -> Any:
    """Containers deep-copied (a record never shares them), scalars as they are."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


@attrs.define(kw_only=True, repr=False)
class Model:
    """Base of every record. Subclasses declare fields with `declared` and these."""

    kind: ClassVar[str] = ""
    key_field: ClassVar[str] = "name"
    collection: ClassVar[str] = ""
    # JSON schema of a create (PUT) body.
    input_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Keys of a create answer that are credentials shown once, beside the record
    #: (an API token's `token`): never stored, logged or recorded.
    shown_once: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return _names(cls)

    @classmethod
    def names(cls, role: Role) -> tuple[str, ...]:
        """The fields declared with (at least) this role."""
        return _names(cls, role)

    @classmethod
    def secret_keys(cls) -> dict[str, tuple[str, ...]]:
        """Mapping fields -> their keys that are secrets."""
        return _secret_keys(cls)

    def __repr__(self) -> str:
        return f"{self.kind}({self.to_safe_dict()!r})"

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))

    def to_dict(self) -> dict[str, Any]:
        """The full record, secrets included. Only for the storage layer."""
        return {name: _copied(getattr(self, name)) for name in self.field_names()}

    def to_stored_dict(self) -> dict[str, Any]:
        """What the store keeps: everything but computed fields."""
        derived = self.names(Role.DERIVED)
        return {name: _copied(getattr(self, name))
                for name in self.field_names() if name not in derived}

    def to_safe_dict(self) -> dict[str, Any]:
        """The record without secrets or internals (secret keys of a mapping masked):
        what clients and logs see."""
        hidden = self.names(Role.HIDDEN)
        data = {name: _copied(getattr(self, name))
                for name in self.field_names() if name not in hidden}
        for name, keys in self.secret_keys().items():
            shown = data.get(name)
            for key in keys:
                if isinstance(shown, dict) and key in shown:
                    shown[key] = "******"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a record from stored data, ignoring fields this version dropped."""
        known = cls.field_names()
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_input(cls, key: str, body: object) -> Self:
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
        for name in cls.names(Role.READ_ONLY):
            body.pop(name, None)
        unknown = set(body) - set(cls.field_names())
        if unknown:
            raise ValidationError(f"unknown field for {cls.kind}", field=sorted(unknown)[0])
        record = cls(**{cls.key_field: key, **body})
        record.validate()
        return record

    def validate(self) -> None:
        """Checks beyond the JSON schema. Subclasses extend."""
        validate_name(self.key, field=self.key_field)


_NAMES: dict[tuple[type[Model], Role | None], tuple[str, ...]] = {}


def _names(cls: type[Model], role: Role | None = None) -> tuple[str, ...]:
    """Field names (with the role, if given), read from the declarations once."""
    try:
        return _NAMES[(cls, role)]
    except KeyError:
        pass
    names = tuple(a.name for a in attrs.fields(cls)
                  if role is None or role in a.metadata.get(_ROLE, Role.PLAIN))
    _NAMES[(cls, role)] = names
    return names


def _secret_keys(cls: type[Model]) -> dict[str, tuple[str, ...]]:
    return {a.name: a.metadata[_SECRET_KEYS] for a in attrs.fields(cls)
            if a.metadata.get(_SECRET_KEYS)}


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


@attrs.define(kw_only=True, repr=False)
class Host(Model):
    """A managed host. Status fields are set by Commissaire, facts by investigation."""

    kind: ClassVar[str] = "Host"
    key_field: ClassVar[str] = "address"
    collection: ClassVar[str] = "hosts"

    address: str = declared("")
    status: str = declared(HostState.INVESTIGATING.value, Role.STATE)
    os: str = declared("", Role.STATE)
    cpus: int = declared(0, Role.STATE)
    memory: int = declared(0, Role.STATE)  # KiB, as the kernel reports MemTotal
    space: int = declared(0, Role.STATE)  # KiB free on the root filesystem
    last_check: str | None = declared(None, Role.STATE)
    source: str = declared("")
    # Given by the client; a service may record a change too (not read-only).
    ssh_port: int = declared(22, Role.RECORDED)
    status_reason: str = declared("", Role.STATE)
    host_key_fingerprint: str = declared("", Role.STATE)
    ssh_host_key: str = declared("", Role.STATE)  # the host key pinned at registration (public)
    # Set once bootstrap succeeded: the watcher checks only these.
    bootstrapped: bool = declared(False, Role.STATE)
    # Kept by the storage service in the same transaction as the cluster's hostset.
    cluster: str = declared("")
    # The record's incarnation: a uuid4 hex the storage service sets at creation
    # (never from the API); services name it in updates. "" = stored before uids.
    uid: str = declared("", Role.READ_ONLY)

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
    def input_to_records(cls, address: str, body: object) -> tuple[Host, HostCreds, str]:
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
        for name in cls.names(Role.READ_ONLY):
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


Host.input_schema = _object_schema(
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
    read_only=Host.names(Role.READ_ONLY),
)


@attrs.define(kw_only=True, repr=False)
class HostCreds(Model):
    """What it takes to reach a host over SSH. Encrypted at rest, never logged."""

    kind: ClassVar[str] = "HostCreds"
    key_field: ClassVar[str] = "address"
    collection: ClassVar[str] = "secrets/hosts"

    address: str = declared("")
    ssh_priv_key: str = declared("", Role.SECRET)
    # Sealed with the key (who holds it is no one's business), shown with the record.
    remote_user: str = declared("root", Role.SEALED)
    # The incarnation of the host these belong to (bound into the encryption).
    uid: str = declared("")

    def validate(self) -> None:
        validate_address(self.address, field="address")
        validate_base64(self.ssh_priv_key, field="ssh_priv_key")
        if len(self.ssh_priv_key) > _KEY_B64_MAX:
            raise ValidationError(f"must be at most {_KEY_B64_MAX} characters",
                                  field="ssh_priv_key")
        # The user name reaches the inventory and SSH: a POSIX name, matched in full.
        validate_pattern(self.remote_user, USER_NAME, "remote_user", _USER["description"])


@attrs.define(kw_only=True, repr=False)
class Cluster(Model):
    """A group of like hosts. `hostset` holds the members; status is computed."""

    kind: ClassVar[str] = "Cluster"
    collection: ClassVar[str] = "clusters"

    name: str = declared("")
    status: str = declared(ClusterState.OK.value, Role.COMPUTED)
    network: str = declared("default")
    container_manager: str = declared("")
    # "" (stored before the field existed, or not given): the profile's default.
    container_runtime: str = declared("")
    hosts: dict[str, int] = declared({"total": 0, "available": 0, "unavailable": 0},
                                     Role.COMPUTED)
    hostset: list[str] = declared([], Role.INTERNAL | Role.READ_ONLY)

    @classmethod
    def from_input(cls, key: str, body: object) -> Self:
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


Cluster.input_schema = _object_schema(
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
    read_only=Cluster.names(Role.READ_ONLY),
)


@attrs.define(kw_only=True, repr=False)
class Network(Model):
    """Network configuration handed to flannel on the hosts of a cluster."""

    kind: ClassVar[str] = "Network"
    collection: ClassVar[str] = "networks"

    name: str = declared("")
    type: str = declared("flannel_etcd")
    options: dict[str, Any] = declared({})

    # The options each network type takes, typed: they end up in files on the hosts.
    _server_options: ClassVar[dict[str, Any]] = _object_schema(
        {"address": string(HOST_PORT, 300, description="host:port of the flannel server "
                           "(an IPv6 address in brackets), port 1-65535")},
        required=("address",))
    _etcd_options: ClassVar[dict[str, Any]] = _object_schema({
        "etcd_server_url": string(f"{URL}(?:,{URL}){{0,15}}", URL_MAX, description=(
            "one or more comma-separated http(s) URLs of etcd (default: the store's)")),
        "flannel_key": {**_ABS_PATH, "maxLength": 256,
                        "description": "the etcd key prefix of flannel's configuration "
                        "(default /atomic.io/network): " + _ABS_PATH["description"]},
    })
    input_schema: ClassVar[dict[str, Any]] = {
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


@attrs.define(kw_only=True, repr=False)
class ContainerManagerConfig(Model):
    """How to reach a Kubernetes/OpenShift API (or `trivial`: no manager)."""

    kind: ClassVar[str] = "ContainerManagerConfig"
    collection: ClassVar[str] = "container_managers"

    name: str = declared("")
    type: str = declared("")
    # The token is a credential: sealed at rest, masked by GET.
    options: dict[str, Any] = declared({}, secret_keys=("token",))
    # The incarnation, set by the storage service (bound into the token's encryption).
    uid: str = declared("", Role.INTERNAL | Role.READ_ONLY)

    _options: ClassVar[dict[str, Any]] = {
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
    def validate(self) -> None:
        super().validate()
        check_schema(self.input_schema, {"type": self.type, "options": self.options})


ContainerManagerConfig.input_schema = {
    **_object_schema(
        {"name": {**NAME_SCHEMA, "readOnly": True,
                  "description": _ECHOED_KEY.format("name")},
         "type": {"enum": list(CONTAINER_MANAGER_TYPES)},
         "options": ContainerManagerConfig._options},
        required=("type",), read_only=ContainerManagerConfig.names(Role.READ_ONLY)),
    # kubernetes/openshift need the API server's URL (trivial uses no option).
    "if": {"properties": {"type": {"enum": ["kubernetes", "openshift"]}}},
    "then": {"properties": {"options": {
        "anyOf": [{"required": ["server_url"]}, {"required": ["apiserver"]}]}},
        "required": ["options"]},
}


@attrs.define(kw_only=True, repr=False)
class ClusterOperation(Model):
    """A rolling operation over the hosts of a cluster (restart/upgrade/deploy).

    `hosts` holds the per-host record (state, timestamps, reason, events); the
    seed's lists (`restarted`, `in_process`, ...) are derived from it.
    """

    operation: ClassVar[str] = ""
    done_list: ClassVar[str] = ""
    # Lists derived from `hosts` by to_safe_dict (besides `done_list`).
    derived_lists: ClassVar[tuple[str, ...]] = ("in_process",)

    name: str = declared("")
    status: str = declared(OperationState.IN_PROCESS.value, Role.STATE)
    started_at: str | None = declared(None, Role.STATE)
    finished_at: str | None = declared(None, Role.STATE)
    # address -> {"state", timestamps, "reason", "events"}
    hosts: dict[str, dict[str, Any]] = declared({}, Role.STATE)
    options: dict[str, Any] = declared({})
    reason: str = declared("", Role.STATE)

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

    @classmethod
    def read_only_names(cls) -> tuple[str, ...]:
        """What a client may echo back from a GET: the state and the derived lists."""
        return (*cls.names(Role.READ_ONLY), *cls.derived_lists, cls.done_list)

    @classmethod
    def from_input(cls, key: str, body: object) -> Self:
        """The PUT body holds the rolling options (and, for a deploy, the version)."""
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        check_schema(cls.input_schema, body)
        ignored = set(cls.read_only_names())
        body = {k: v for k, v in body.items() if k not in ignored}
        echoed = body.pop("name", None)
        if echoed is not None and echoed != key:
            raise ValidationError(f"does not match the cluster in the URL ({key!r})", field="name")
        top = {k: body.pop(k) for k in list(body) if k in cls.field_names()}
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
        required=required, read_only=(*ClusterOperation.names(Role.READ_ONLY),
                                      *ClusterOperation.derived_lists, done_list))


@attrs.define(kw_only=True, repr=False)
class ClusterRestart(ClusterOperation):
    kind: ClassVar[str] = "ClusterRestart"
    operation: ClassVar[str] = "restart"
    done_list: ClassVar[str] = "restarted"
    collection: ClassVar[str] = "cluster_ops/restart"
    input_schema: ClassVar[dict[str, Any]] = _operation_schema(done_list)


@attrs.define(kw_only=True, repr=False)
class ClusterUpgrade(ClusterOperation):
    kind: ClassVar[str] = "ClusterUpgrade"
    operation: ClassVar[str] = "upgrade"
    done_list: ClassVar[str] = "upgraded"
    collection: ClassVar[str] = "cluster_ops/upgrade"
    input_schema: ClassVar[dict[str, Any]] = _operation_schema(done_list)


@attrs.define(kw_only=True, repr=False)
class ClusterDeploy(ClusterOperation):
    kind: ClassVar[str] = "ClusterDeploy"
    operation: ClassVar[str] = "deploy"
    done_list: ClassVar[str] = "deployed"
    collection: ClassVar[str] = "cluster_ops/deploy"

    version: str = declared("")

    _version: ClassVar[dict[str, Any]] = string(VERSION, description="1-128 letters, digits and ._:+~-, starting "
                      "with a letter or digit (an OSTree version or a package version)")
    input_schema: ClassVar[dict[str, Any]] = _operation_schema(
        done_list, {"version": _version}, required=("version",))

    def validate(self) -> None:
        super().validate()
        # The version reaches rpm-ostree/package commands on the hosts.
        validate_pattern(self.version, VERSION, "version", self._version["description"])


@attrs.define(kw_only=True, repr=False)
class OperationLock(Model):
    """Who runs an operation: held under a store lease, gone when its holder dies."""

    kind: ClassVar[str] = "OperationLock"
    collection: ClassVar[str] = "locks/cluster_ops"

    name: str = declared("")
    owner: str = declared("")
    lease: int = declared(0)
    acquired_at: str | None = declared(None)

    def validate(self) -> None:
        return None


@attrs.define(kw_only=True, repr=False)
class HostStatus(Model):
    """The combined status of a host and of its node in the container manager."""

    kind: ClassVar[str] = "HostStatus"
    key_field: ClassVar[str] = "address"

    address: str = declared("", Role.INTERNAL)  # named by the URL, not repeated
    type: str = declared("host_only")
    host: dict[str, Any] = declared({})
    container_manager: dict[str, Any] = declared({})


# The roles a token may carry (the caller roles of commissaire.identity).
TOKEN_ROLES = tuple(r.value for r in CallerRole)
TOKEN_CLUSTERS_MAX = 100
TOKEN_LIFETIME_MAX = 10 * 366 * 86400  # seconds: ten years (expires_in)
# expires_at as a client gives it: ISO 8601, UTC (a "Z" or "+00:00" suffix, or none),
# a date that exists (the schema says all a 400 can say about its form).
_UTC_TIME = UTC_TIME


def parse_utc(text: object, field: str) -> _dt.datetime:
    """An ISO 8601 UTC time of a record (naive = UTC), aware; else a 400 naming `field`."""
    if not isinstance(text, str) or not full_match(_UTC_TIME, text):
        raise ValidationError("must be an ISO 8601 time in UTC, e.g. 2030-01-31T12:00:00Z",
                              field=field)
    try:
        moment = _dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise ValidationError("is not a date and time that exists", field=field) from None
    return moment.replace(tzinfo=_dt.UTC)


def as_utc_text(moment: _dt.datetime) -> str:
    """As every timestamp of the records (utcnow): ISO 8601, UTC, no offset suffix."""
    return moment.astimezone(_dt.UTC).replace(tzinfo=None).isoformat()


@attrs.define(kw_only=True, repr=False)
class ApiToken(Model):
    """An API token: a name, a role, an optional cluster scope and an expiry.

    The token string itself (commissaire.apitokens) is shown once, in the answer
    to its creation (`shown_once`), and never stored: the record keeps only its
    digest (declared VERIFIER: never shown, logged, notified or recorded). `id`
    is public: it is the part of the token string that finds the record.
    """

    kind: ClassVar[str] = "ApiToken"
    collection: ClassVar[str] = "tokens"
    shown_once: ClassVar[tuple[str, ...]] = ("token",)

    name: str = declared("")
    role: str = declared("")
    clusters: list[str] = declared([])
    """The clusters the token may act on; empty: all of them."""
    expires_at: str | None = declared(None)
    id: str = declared("", Role.READ_ONLY)
    created_at: str | None = declared(None, Role.READ_ONLY)
    created_by: str = declared("", Role.READ_ONLY)
    last_used_at: str | None = declared(None, Role.STATE)
    """Updated at most once a minute (not a store write per request)."""
    digest: str = declared("", Role.VERIFIER)
    # Enrollment tokens (max_uses, uses) can be added here later.

    @classmethod
    def from_input(cls, key: str, body: object) -> Self:
        """A PUT body: role, clusters, and expires_in (seconds) or expires_at."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        check_schema(cls.input_schema, body)
        now = _dt.datetime.now(_dt.UTC)
        expires: _dt.datetime | None = None
        if "expires_in" in body:
            expires = now + _dt.timedelta(seconds=body["expires_in"])
        elif body.get("expires_at") is not None:
            expires = parse_utc(body["expires_at"], "expires_at")
            if expires <= now:
                # Well-formed (the schema's last word), but the server's clock is past
                # it: a conflict with the server's state, as a missing cluster is.
                raise Conflict("expires_at: is in the past (times are UTC)",
                               field="expires_at")
        record = cls(name=key, role=body["role"],
                     clusters=list(dict.fromkeys(body.get("clusters", []))),
                     expires_at=None if expires is None else as_utc_text(expires))
        record.validate()
        return record

    def validate(self) -> None:
        super().validate()
        if self.role not in TOKEN_ROLES:
            raise ValidationError("must be one of: " + ", ".join(TOKEN_ROLES), field="role")
        if not isinstance(self.clusters, list) or len(self.clusters) > TOKEN_CLUSTERS_MAX:
            raise ValidationError(f"must be a list of at most {TOKEN_CLUSTERS_MAX} cluster "
                                  "names", field="clusters")
        for cluster in self.clusters:
            validate_name(cluster, field="clusters")
        if self.id:
            validate_pattern(self.id, TOKEN_ID, "id", "16 hexadecimal digits")
        if self.expires_at is not None:
            parse_utc(self.expires_at, "expires_at")

    def expired(self, now: _dt.datetime) -> bool:
        return self.expires_at is not None and parse_utc(self.expires_at, "expires_at") <= now


ApiToken.input_schema = {**_object_schema(
    {
        "role": {"enum": list(TOKEN_ROLES), "description": "what the token may do: "
                 + ", ".join(TOKEN_ROLES)},
        "clusters": {"type": "array", "items": NAME_SCHEMA, "maxItems": TOKEN_CLUSTERS_MAX,
                     "description": "the clusters the token may act on (default: all)"},
        "expires_in": {"type": "integer", "minimum": 1, "maximum": TOKEN_LIFETIME_MAX,
                       "description": "seconds from now until the token expires"},
        "expires_at": {"anyOf": [string(_UTC_TIME, 40), {"type": "null"}],
                       "description": "when the token expires: ISO 8601, UTC "
                       "(default: never)"},
    },
    required=("role",)),
    # One expiry or the other: beside expires_in, expires_at may only be null.
    "dependentSchemas": {"expires_in": {"properties": {"expires_at": {"type": "null"}}}},
}


@attrs.define(kw_only=True, repr=False)
class ApiTokenId(Model):
    """The index of API tokens by id: finds a token's record from its string in one
    read. Written and deleted with the token, in the same transaction."""

    kind: ClassVar[str] = "ApiTokenId"
    key_field: ClassVar[str] = "id"
    collection: ClassVar[str] = "token_ids"

    id: str = declared("")
    name: str = declared("")

    def validate(self) -> None:
        validate_pattern(self.id, TOKEN_ID, "id", "16 hexadecimal digits")
        validate_name(self.name)


OPERATIONS: dict[str, type[ClusterOperation]] = {
    cls.operation: cls for cls in (ClusterRestart, ClusterUpgrade, ClusterDeploy)
}

# Every stored model by kind: the storage service and bus use these names.
MODELS: dict[str, type[Model]] = {
    cls.kind: cls
    for cls in (
        Host, HostCreds, Cluster, Network, ContainerManagerConfig,
        ClusterRestart, ClusterUpgrade, ClusterDeploy, OperationLock, ApiToken, ApiTokenId,
    )
}


def model_class(kind: str) -> type[Model]:
    try:
        return MODELS[kind]
    except KeyError:
        raise ValidationError(f"unknown model kind {kind!r}", field="kind") from None
