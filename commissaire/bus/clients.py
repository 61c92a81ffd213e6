"""Typed clients of the services: the bus protocol, declared in one place.

Every method a service exposes (`@bus_method`, commissaire_service.service) has
exactly one method here, of the same name, with typed parameters and a typed
result: records come back as the model classes of commissaire.models, other
answers as plain types or TypedDicts. The REST app and the services call each
other only through these (tests/unit/test_bus_clients.py checks that the two
sides name the same methods), so a method name such as "storage.get_host" is
written once, here.

A client wraps a bus client (anything with commissaire.bus.BusClient's `call`);
it is a small object, made per request where the caller has a request id to
pass on (for log correlation), an actor (the API caller the calls are made for,
for the record) or a timeout of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NotRequired, Protocol, TypedDict, TypeVar

from commissaire.activity import Event
from commissaire.identity import Identity
from commissaire.models import (
    ApiToken,
    ClusterOperation,
    ContainerManagerConfig,
    Host,
    HostCreds,
    Model,
    model_class,
)

M = TypeVar("M", bound=Model)
Op = TypeVar("Op", bound=ClusterOperation)


class Caller(Protocol):
    """What a client needs of the bus (commissaire.bus.BusClient)."""

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None,
             actor: Identity | None = None) -> Any: ...


def _record(cls: type[M], data: dict[str, Any]) -> M:
    """A record of `cls` from its dict as a service answered it."""
    record = cls.from_dict(data)
    if not isinstance(record, cls):  # from_dict builds its own class
        raise TypeError(f"{cls.__name__}.from_dict built a {type(record).__name__}")
    return record


def _operation(data: dict[str, Any], kind: str) -> ClusterOperation:
    cls = model_class(kind)
    if not issubclass(cls, ClusterOperation):
        raise TypeError(f"{kind} is not a cluster operation")
    return _record(cls, data)


# -- answers that are not records ---------------------------------------------

@dataclass(frozen=True)
class Created(Generic[M]):
    """The answer to a create: the record, and whether it is new (False: an
    identical one existed)."""

    created: bool
    record: M


@dataclass(frozen=True)
class HostPage:
    """One page of hosts, and how many matched in all."""

    total: int
    items: list[Host]


@dataclass(frozen=True)
class EventPage:
    """One page of the activity stream, and how many entries matched in all."""

    total: int
    items: list[Event]


@dataclass(frozen=True)
class TokenCreated:
    """A new API token's record, and its token string: shown once, stored nowhere."""

    record: ApiToken
    token: str = field(repr=False)


class TokenIdentity(TypedDict):
    """verify_token: who a valid token stands for."""

    name: str
    role: str
    clusters: list[str]


class LockGrant(TypedDict):
    """acquire_lock: the lease when acquired, else who holds the lock."""

    acquired: bool
    lease: NotRequired[int]
    held_by: NotRequired[str]


class HostCheck(TypedDict):
    """One watcher check: what changed on the incarnation `uid` of a host."""

    address: str
    uid: str
    changes: dict[str, Any]


class ChecksRecorded(TypedDict):
    recorded: int
    missing: list[str]
    stale: list[str]


# -- the clients ------------------------------------------------------------------

class ServiceClient:
    """Calls one service over `bus`, naming `request_id` (None: the call's own id)
    and `actor` (None: the control plane's own call), waiting `timeout` seconds
    (None: the bus's default)."""

    #: The service's name: its methods are called as `<service>.<method>`.
    service: ClassVar[str] = ""

    def __init__(self, bus: Caller, *, request_id: str | None = None,
                 timeout: float | None = None, actor: Identity | None = None) -> None:
        self.bus = bus
        self.request_id = request_id
        self.timeout = timeout
        self.actor = actor

    def _call(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        if self.actor is None:  # the control plane's own call (any Caller takes it)
            return self.bus.call(method, params, timeout=timeout, request_id=self.request_id)
        return self.bus.call(method, params, timeout=timeout, request_id=self.request_id,
                             actor=self.actor)

    def ping(self) -> dict[str, Any]:
        """Liveness and the service's health facts (GET /api/v0/status)."""
        return dict(self._call(f"{self.service}.ping", {}))


class StorageClient(ServiceClient):
    service = "storage"

    # -- clusters, networks, container managers ---------------------------

    def get(self, model: type[M], key: str) -> M:
        """A record without its secrets (a container manager's token masked)."""
        return _record(model, self._call("storage.get", {"kind": model.kind, "key": key}))

    def reveal_container_manager(self, name: str) -> ContainerManagerConfig:
        """A container manager with its token: for the services that use it."""
        return _record(ContainerManagerConfig,
                       self._call("storage.reveal_container_manager", {"name": name}))

    def list_names(self, model: type[Model]) -> list[str]:
        return list(self._call("storage.list_names", {"kind": model.kind}))

    def create(self, record: M) -> Created[M]:
        """Create a cluster, network or container manager (identical again: a no-op)."""
        outcome = self._call("storage.create", {"kind": record.kind,
                                                "record": record.to_dict()})
        return Created(bool(outcome["created"]), _record(type(record), outcome["record"]))

    def delete(self, model: type[Model], key: str) -> None:
        self._call("storage.delete", {"kind": model.kind, "key": key})

    # -- hosts ----------------------------------------------------------------

    def get_host(self, address: str) -> Host:
        return _record(Host, self._call("storage.get_host", {"address": address}))

    def list_hosts(self, cluster: str = "", status: str = "", limit: int = 0,
                   offset: int = 0) -> HostPage:
        """No argument: every host. Else filtered by cluster and status, paged."""
        page = self._call("storage.list_hosts", {"cluster": cluster, "status": status,
                                                 "limit": limit, "offset": offset})
        return HostPage(int(page["total"]), [_record(Host, h) for h in page["items"]])

    def create_host(self, host: Host, creds: HostCreds, cluster: str = "") -> Created[Host]:
        outcome = self._call("storage.create_host", {"host": host.to_dict(),
                                                     "creds": creds.to_dict(),
                                                     "cluster": cluster})
        return Created(bool(outcome["created"]), _record(Host, outcome["record"]))

    def reveal_creds(self, address: str, uid: str | None = None) -> HostCreds:
        """The host's SSH credentials, private key included; with `uid`, only those
        of that incarnation (errors.StaleRecord otherwise)."""
        params: dict[str, Any] = {"address": address}
        if uid is not None:
            params["uid"] = uid
        return _record(HostCreds, self._call("storage.reveal_creds", params))

    def update_host(self, address: str, changes: dict[str, Any], uid: str,
                    expect_status: str = "") -> Host:
        """Record what was learned about the incarnation `uid` of a host."""
        params: dict[str, Any] = {"address": address, "uid": uid, "changes": changes}
        if expect_status:
            params["expect_status"] = expect_status
        return _record(Host, self._call("storage.update_host", params))

    def record_checks(self, checks: list[HostCheck]) -> ChecksRecorded:
        answer: ChecksRecorded = self._call("storage.record_checks", {"checks": checks})
        return answer

    def delete_host(self, address: str) -> None:
        self._call("storage.delete_host", {"address": address})

    def etcd_endpoint(self) -> str:
        """The URL of the store's etcd ('' without one)."""
        return str(self._call("storage.etcd_endpoint", {}))

    # -- cluster members --------------------------------------------------------

    def cluster_hosts(self, name: str) -> list[str]:
        return list(self._call("storage.cluster_hosts", {"name": name}))

    def cluster_add_host(self, name: str, address: str) -> list[str]:
        return list(self._call("storage.cluster_add_host", {"name": name, "address": address}))

    def cluster_remove_host(self, name: str, address: str) -> None:
        self._call("storage.cluster_remove_host", {"name": name, "address": address})

    def cluster_set_hosts(self, name: str, old: list[str], new: list[str]) -> list[str]:
        return list(self._call("storage.cluster_set_hosts", {"name": name, "old": old,
                                                             "new": new}))

    # -- rolling operations -------------------------------------------------------

    def start_operation(self, record: Op) -> Op:
        return _record(type(record), self._call("storage.start_operation", {
            "kind": record.kind, "record": record.to_dict()}))

    def get_operation(self, model: type[Op], name: str) -> Op:
        return _record(model, self._call("storage.get_operation", {"kind": model.kind,
                                                                   "name": name}))

    def abort_operation(self, model: type[Op], name: str) -> Op:
        return _record(model, self._call("storage.abort_operation", {"kind": model.kind,
                                                                     "name": name}))

    def list_operations(self, status: str = "in_process") -> list[ClusterOperation]:
        """Every operation with this status, of every kind."""
        return [_operation(op, op["kind"])
                for op in self._call("storage.list_operations", {"status": status})]

    def update_operation_host(self, model: type[Op], name: str, address: str, lease: int,
                              changes: dict[str, Any], event: str = "",
                              uid: str | None = None) -> Op:
        return _record(model, self._call("storage.update_operation_host", {
            "kind": model.kind, "name": name, "address": address, "lease": lease,
            "changes": changes, "event": event, "uid": uid}))

    def finish_operation(self, model: type[Op], name: str, lease: int, status: str,
                         reason: str = "") -> Op:
        return _record(model, self._call("storage.finish_operation", {
            "kind": model.kind, "name": name, "lease": lease, "status": status,
            "reason": reason}))

    # -- operation locks ------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: int = 10) -> LockGrant:
        grant: LockGrant = self._call("storage.acquire_lock", {"name": name, "owner": owner,
                                                                "ttl": ttl})
        return grant

    def keepalive_lock(self, name: str, lease: int) -> int:
        """Renew the lease (its TTL); errors.NotFound once it expired."""
        return int(self._call("storage.keepalive_lock", {"name": name, "lease": lease})["ttl"])

    def release_lock(self, name: str, lease: int) -> None:
        self._call("storage.release_lock", {"name": name, "lease": lease})

    # -- API tokens -------------------------------------------------------------------

    def create_token(self, record: ApiToken) -> TokenCreated:
        """Store a new token (its id, digest and creation fields made by the service)."""
        answer = self._call("storage.create_token", {"record": record.to_dict()})
        return TokenCreated(_record(ApiToken, answer["record"]), str(answer["token"]))

    def list_tokens(self) -> list[ApiToken]:
        return [_record(ApiToken, t) for t in self._call("storage.list_tokens", {})]

    def get_token(self, name: str) -> ApiToken:
        return _record(ApiToken, self._call("storage.get_token", {"name": name}))

    def revoke_token(self, name: str) -> None:
        self._call("storage.revoke_token", {"name": name})

    def verify_token(self, token: str) -> TokenIdentity:
        """Who the token string stands for; errors.AuthenticationRequired otherwise."""
        answer: TokenIdentity = self._call("storage.verify_token", {"token": token})
        return answer

    # -- the activity stream ----------------------------------------------------------

    def record_event(self, event: Event) -> None:
        """Store an entry (retention applies); its JSON line is the caller's to log."""
        self._call("storage.record_event", {"event": event.to_dict()})

    def list_events(self, object_kind: str = "", object_key: str = "", actor: str = "",
                    action: str = "", since: str = "", until: str = "", limit: int = 0,
                    offset: int = 0, order: str = "newest") -> EventPage:
        """Entries matching every filter given (times ISO 8601, inclusive), paged."""
        page = self._call("storage.list_events", {
            "object_kind": object_kind, "object_key": object_key, "actor": actor,
            "action": action, "since": since, "until": until, "limit": limit,
            "offset": offset, "order": order})
        return EventPage(int(page["total"]), [_record(Event, e) for e in page["items"]])


class InvestigatorClient(ServiceClient):
    service = "investigator"


class WatcherClient(ServiceClient):
    service = "watcher"


class ClusterExecClient(ServiceClient):
    service = "clusterexec"


#: Seconds a drain's caller waits beyond the drain's own timeout.
DRAIN_MARGIN = 10.0


class ContainerClient(ServiceClient):
    """The container manager service; every call names a container manager record
    and a host address. Answers are the manager's facts about the node."""

    service = "container"

    def register_node(self, container_manager: str, address: str) -> dict[str, Any]:
        return dict(self._call("container.register_node", {
            "container_manager": container_manager, "address": address}))

    def get_node_status(self, container_manager: str, address: str) -> dict[str, Any]:
        return dict(self._call("container.get_node_status", {
            "container_manager": container_manager, "address": address}))

    def node_ready(self, container_manager: str, address: str) -> bool:
        return bool(self._call("container.node_ready", {
            "container_manager": container_manager, "address": address}))

    def cordon(self, container_manager: str, address: str) -> dict[str, Any]:
        return dict(self._call("container.cordon", {
            "container_manager": container_manager, "address": address}))

    def uncordon(self, container_manager: str, address: str) -> dict[str, Any]:
        return dict(self._call("container.uncordon", {
            "container_manager": container_manager, "address": address}))

    def drain(self, container_manager: str, address: str, timeout: float = 60) -> dict[str, Any]:
        """Cordon and evict within `timeout` s; the call waits DRAIN_MARGIN s longer."""
        return dict(self._call("container.drain", {
            "container_manager": container_manager, "address": address, "timeout": timeout},
            timeout=float(timeout) + DRAIN_MARGIN))


#: Every client, by the name of its service.
CLIENTS: dict[str, type[ServiceClient]] = {
    cls.service: cls for cls in (StorageClient, InvestigatorClient, WatcherClient,
                                 ClusterExecClient, ContainerClient)
}

__all__ = [
    "CLIENTS", "Caller", "ChecksRecorded", "ClusterExecClient", "ContainerClient", "Created",
    "EventPage", "HostCheck", "HostPage", "InvestigatorClient", "LockGrant", "ServiceClient",
    "StorageClient", "TokenCreated", "TokenIdentity", "WatcherClient",
]
