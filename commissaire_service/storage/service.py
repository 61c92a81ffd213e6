"""The storage service: the only process that talks to the store.

Each exposed method is one atomic change (or one read). Changes to several
records (a host, its credentials and its cluster) are one transaction. Every
committed change is announced as `notify.storage.<Kind>.<created|updated|deleted>`
with the record's secret-free form.

Incarnations: a host (and a container manager) gets a new `uid` each time it is
created. Services name the uid they read in every update (`update_host`,
`record_checks`, `update_operation_host`, `reveal_creds`); an update naming an
incarnation that is gone is refused with errors.StaleRecord, so a record deleted
and created again never receives what was learned about the old one. Records
stored before uids existed have uid "" (the legacy incarnation) until deleted.
"""
from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from commissaire import errors
from commissaire.models import (
    OPERATIONS,
    Cluster,
    ClusterOperation,
    ContainerManagerConfig,
    Host,
    HostCreds,
    Model,
    Network,
    OperationLock,
    Role,
    model_class,
    utcnow,
)
from commissaire.storage.base import ABSENT, Txn
from commissaire.validation import validate_address, validate_name
from commissaire_service.service import Service, bus_method
from commissaire_service.storage.activity import STORAGE, ActivityLog, ActivityMethods
from commissaire_service.storage.repository import Current, Repository, Snapshot, settled
from commissaire_service.storage.tokens import TokenMethods

logger = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]

# Fields whose equality makes a re-PUT idempotent rather than a conflict.
_IDENTITY = {
    "Cluster": ("network", "container_manager", "container_runtime"),
    "Network": ("type", "options"),
    "ContainerManagerConfig": ("type", "options"),
}
_SIMPLE_KINDS = tuple(_IDENTITY)


def _same_settings(existing: Model, new: Model, fields: tuple[str, ...]) -> bool:
    """Whether a re-PUT repeats the stored settings. The options may hold a token:
    compared in constant time, so the answer (200 or 409) confirms a whole guess at
    most, never a guess's first characters."""
    def canonical(record: Model) -> bytes:
        return json.dumps([getattr(record, f) for f in fields], sort_keys=True,
                          default=str).encode()
    return hmac.compare_digest(canonical(existing), canonical(new))


class _Stale(Exception):
    """A record read before the transaction changed shape; read again."""


def new_uid() -> str:
    """A new incarnation id."""
    return uuid.uuid4().hex


def _stale(address: str, uid: str | None) -> errors.StaleRecord:
    return errors.StaleRecord(
        f"host {address!r} was deleted (and perhaps created again) since incarnation "
        f"{uid!r} was read; this update is refused", address=address)


class _OperationLocks:
    """Mixin: leases that say which clusterexec copy runs which operation."""

    repo: Repository

    def _lock_handler(self) -> Any:
        return self.repo.handlers.for_model("OperationLock")

    @bus_method()
    def acquire_lock(self, name: str, owner: str, ttl: int = 10) -> dict[str, Any]:
        """Take the lock `name` under a new lease, or say who holds it."""
        handler = self._lock_handler()
        key = f"{OperationLock.collection}/{name}"
        lease = handler.lease_grant(ttl)
        record = OperationLock(name=name, owner=owner, lease=lease, acquired_at=utcnow())
        if handler.commit(Txn(compares=[(key, ABSENT)], puts=[(key, record.to_dict())]),
                          lease=lease):
            return {"acquired": True, "lease": lease}
        handler.lease_revoke(lease)
        held = handler.get(key)
        return {"acquired": False, "held_by": held.value.get("owner") if held else ""}

    @bus_method()
    def keepalive_lock(self, name: str, lease: int) -> dict[str, Any]:  # noqa: ARG002  (callers name the lock)
        """Renew; NotFound once the lease expired (the holder must stop)."""
        return {"ttl": self._lock_handler().lease_keepalive(lease)}

    @bus_method()
    def release_lock(self, name: str, lease: int) -> list[Any]:  # noqa: ARG002  (callers name the lock)
        self._lock_handler().lease_revoke(lease)
        return []


class StorageService(_OperationLocks, ActivityMethods, TokenMethods, Service):
    name = "storage"

    def __init__(self, repository: Repository, notify: Notify | None = None,
                 activity: ActivityLog | None = None) -> None:
        super().__init__()
        self.repo = repository
        # The activity stream (default retention unless the settings give one).
        self.activity = activity or ActivityLog(repository.handlers)
        self._notify = notify or (lambda _key, _params: None)

    def health(self) -> dict[str, Any]:
        for handler in self.repo.handlers.all():
            handler.ping()
        return {"store": "ok"}

    def ensure_default_network(self) -> None:
        """Clusters default to network "default": make sure it exists."""
        try:
            self.create("Network", {"name": "default", "type": "flannel_etcd", "options": {}})
        except errors.Conflict:
            pass

    # -- notifications ---------------------------------------------------

    def _announce(self, record: Model, event: str) -> None:
        try:
            self._notify(f"notify.storage.{record.kind}.{event}", {"record": record.to_safe_dict()})
        except errors.CommissaireError as exc:
            logger.warning("could not announce %s %s: %s", record.kind, event, exc.description)

    # -- generic records (clusters, networks, container managers) --------

    @bus_method()
    def get(self, kind: str, key: str) -> dict[str, Any]:
        """A record as clients see it: no secrets (reveal_* methods return those)."""
        if kind == "Cluster":
            return self.get_cluster(key)
        if kind == "HostCreds":
            raise errors.Forbidden("use reveal_creds for credentials")
        return self.repo.require(model_class(kind), key).to_safe_dict()

    @bus_method()
    def reveal_container_manager(self, name: str) -> dict[str, Any]:
        """A container manager with its token: only for the services that call it."""
        return self.repo.require(ContainerManagerConfig, name).to_dict()

    @bus_method()
    def list_names(self, kind: str) -> list[str]:
        return [r.key for r in self.repo.list_all(model_class(kind))]

    @bus_method()
    def create(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """Create a record; an identical one is a no-op, a different one a conflict."""
        if kind not in _SIMPLE_KINDS:
            raise errors.InvalidRequest(f"create does not handle {kind}")
        new = model_class(kind).from_dict(record)
        new.validate()
        keys = [(kind, new.key, "")]
        if isinstance(new, Cluster):
            keys.append(("Network", new.network, ""))
            if new.container_manager:
                keys.append(("ContainerManagerConfig", new.container_manager, ""))

        def mutate(current: Current, snap: Snapshot) -> dict[str, Any]:
            existing = current[(kind, new.key)]
            if isinstance(new, Cluster) and new.container_manager:
                # Enforced here, where the manager's type is read in the same
                # transaction (the type of a manager in use cannot change).
                manager = current.of(ContainerManagerConfig, new.container_manager)
                if manager is not None:
                    new.check_runtime(manager.type)
            if existing is not None:
                if _same_settings(existing, new, _IDENTITY[kind]):
                    return {"created": False, "record": existing}
                raise errors.Conflict(
                    f"{kind_label(kind)} {new.key!r} already exists with other settings; "
                    "delete it first to change it"
                )
            if isinstance(new, Cluster):
                if current.of(Network, new.network) is None:
                    raise errors.Conflict(f"network {new.network!r} does not exist")
                if new.container_manager and current[
                        ("ContainerManagerConfig", new.container_manager)] is None:
                    raise errors.Conflict(
                        f"container manager {new.container_manager!r} does not exist")
                new.hostset = []
            if isinstance(new, ContainerManagerConfig):  # the kind with an incarnation
                new.uid = new_uid()
            snap.put(new)
            return {"created": True, "record": new}

        outcome = self.repo.change(keys, mutate)
        record_out: Model = outcome["record"]
        if outcome["created"]:
            self._announce(record_out, "created")
        shown = self.get_cluster(record_out.key) if kind == "Cluster" else record_out.to_safe_dict()
        return {"created": outcome["created"], "record": shown}

    @bus_method()
    def delete(self, kind: str, key: str) -> list[Any]:
        if kind == "Cluster":
            return self._delete_cluster(key)
        if kind not in ("Network", "ContainerManagerConfig"):
            raise errors.InvalidRequest(f"delete does not handle {kind}")
        field = "network" if kind == "Network" else "container_manager"
        users = [c.key for c in self.repo.list_all(Cluster) if getattr(c, field) == key]
        if users:
            raise errors.Conflict(
                f"{kind_label(kind)} {key!r} is used by cluster(s) {', '.join(users)}")

        def mutate(current: Current, snap: Snapshot) -> Model:
            record = current[(kind, key)]
            if record is None:
                raise errors.NotFound(f"{kind_label(kind)} {key!r} does not exist")
            snap.delete(record)
            return record

        # Opaque: a record whose token does not open can still be deleted.
        self._announce(self.repo.change([(kind, key, "")], mutate, opaque=[(kind, key)]),
                       "deleted")
        return []

    # -- hosts ------------------------------------------------------------

    @bus_method()
    def get_host(self, address: str) -> dict[str, Any]:
        return self.repo.require(Host, validate_address(address)).to_safe_dict()

    @bus_method()
    def list_hosts(self, cluster: str = "", status: str = "", limit: int = 0,
                   offset: int = 0) -> dict[str, Any]:
        """Hosts filtered by cluster and status, one page of them, and the total."""
        if cluster:
            self.repo.require(Cluster, validate_name(cluster, "cluster"))
        hosts = [h for h in self.repo.list_all(Host)
                 if (not cluster or h.cluster == cluster) and (not status or h.status == status)]
        page = hosts[offset:offset + limit] if limit else hosts[offset:]
        return {"total": len(hosts), "items": [h.to_safe_dict() for h in page]}

    @bus_method()
    def etcd_endpoint(self) -> str:
        """The URL of the first etcd storage handler ('' without one): flannel_etcd
        networks use the store's etcd (seed: "uses the configured etcd store handler")."""
        for handler in self.repo.handlers.all():
            url = getattr(handler, "server_url", "")
            if url:
                return str(url)
        return ""

    @bus_method()
    def reveal_creds(self, address: str, uid: str | None = None) -> dict[str, Any]:
        """The host's credentials, private key included; with `uid`, only those of that incarnation
        (StaleRecord otherwise). Credentials sealed for another incarnation of the
        host than the current one never open (SecretsUnavailable)."""
        address = validate_address(address)
        for _attempt in range(3):
            host = self.repo.require(Host, address)
            if uid is not None and host.uid != uid:
                raise _stale(address, uid)
            creds = self.repo.require(HostCreds, address)
            if creds.uid == host.uid:
                return creds.to_dict()
            # Deleted and created again between the two reads? Read again.
        raise errors.SecretsUnavailable(
            f"the credentials of host {address} belong to another incarnation of it; "
            "refusing to use them")

    @bus_method()
    def create_host(self, host: dict[str, Any], creds: dict[str, Any],
                    cluster: str = "") -> dict[str, Any]:
        """Create a host with its credentials, in its cluster, in one transaction."""
        new_host = Host.from_dict(host)
        new_creds = HostCreds.from_dict(creds)
        new_host.validate()
        new_creds.validate()
        address = new_host.address
        keys = [("Host", address, new_host.source), ("HostCreds", address, "")]
        if cluster:
            keys.append(("Cluster", validate_name(cluster, "cluster"), ""))

        def mutate(current: Current, snap: Snapshot) -> dict[str, Any]:
            existing = current.of(Host, address)
            group = current.get(("Cluster", cluster)) if cluster else None
            if cluster and group is None:
                raise errors.Conflict(f"cluster {cluster!r} does not exist")
            if existing is not None:
                old_creds = current.of(HostCreds, address)
                same_key = old_creds is not None and old_creds.ssh_priv_key == new_creds.ssh_priv_key
                if not same_key:
                    raise errors.Conflict(f"host {address!r} already exists with other credentials")
                if cluster and existing.cluster != cluster:
                    raise errors.Conflict(
                        f"host {address!r} already exists outside cluster {cluster!r}")
                return {"created": False, "record": existing}
            new_host.status = "investigating"
            new_host.cluster = cluster
            # A new incarnation, whatever the caller sent; the creds are bound to it.
            new_host.uid = new_creds.uid = new_uid()
            snap.put(new_host)
            snap.put(new_creds)
            if isinstance(group, Cluster) and address not in group.hostset:
                group.hostset = [*group.hostset, address]
                snap.put(group)
            return {"created": True, "record": new_host}

        outcome = self.repo.change(keys, mutate)
        if outcome["created"]:
            self._announce(outcome["record"], "created")
        return {"created": outcome["created"], "record": outcome["record"].to_safe_dict()}

    @bus_method()
    def record_checks(self, checks: list[dict[str, Any]]) -> dict[str, Any]:
        """The watcher's results of one cycle: [{"address", "uid", "changes"}]. A check
        that only moves last_check is not announced; a status change is. A check of
        an incarnation that is gone is not recorded (listed in "stale")."""
        recorded, missing, stale = 0, [], []
        for check in checks:
            changes = check["changes"]
            quiet = set(changes) <= {"last_check"}
            uid = check.get("uid")
            try:
                if not isinstance(uid, str):
                    raise _stale(check["address"], None)
                self.update_host(check["address"], changes, uid=uid, announce=not quiet)
                recorded += 1
            except errors.NotFound:
                missing.append(check["address"])
            except errors.StaleRecord:
                stale.append(check["address"])
        return {"recorded": recorded, "missing": missing, "stale": stale}

    @bus_method("update_host")
    def _update_host_call(self, address: str, changes: dict[str, Any], uid: str,
                          expect_status: str = "") -> dict[str, Any]:
        """update_host as services call it over the bus: `uid` is required."""
        if not isinstance(uid, str):
            raise errors.ValidationError("must name the incarnation the update is about",
                                         field="uid")
        return self.update_host(address, changes, uid=uid, expect_status=expect_status)

    def update_host(self, address: str, changes: dict[str, Any], uid: str | None = None,
                    expect_status: str = "", announce: bool = True) -> dict[str, Any]:
        """Services record what they learned (status, facts, last_check) about the
        incarnation `uid` (StaleRecord if the host is now another one). uid=None
        (in-process callers only, never over the bus) does not check it."""
        unknown = set(changes) - set(Host.names(Role.RECORDED))
        if unknown:
            raise errors.ValidationError("cannot be changed this way", field=sorted(unknown)[0])

        def mutate(current: Current, snap: Snapshot) -> Host:
            host = current.of(Host, address)
            if not isinstance(host, Host):
                raise errors.NotFound(f"host {address!r} does not exist")
            if uid is not None and host.uid != uid:
                raise _stale(address, uid)
            if expect_status and host.status != expect_status:
                raise errors.Conflict(
                    f"host {address!r} is {host.status}, not {expect_status}")
            for name, value in changes.items():
                setattr(host, name, value)
            host.validate()
            snap.put(host)
            return host

        host = self.repo.change([("Host", address, "")], mutate)
        if announce:
            self._announce(host, "updated")
        return host.to_safe_dict()

    @bus_method()
    def delete_host(self, address: str) -> list[Any]:
        """Delete a host and its credentials, and take it out of its cluster."""
        address = validate_address(address)

        def attempt() -> list[Any]:
            host = self.repo.require(Host, address)
            keys = [("Host", address, host.source), ("HostCreds", address, "")]
            if host.cluster:
                keys.append(("Cluster", host.cluster, ""))

            def mutate(current: Current, snap: Snapshot,
                       expected: str = host.cluster) -> Model:
                record = current.of(Host, address)
                if record is None:
                    raise errors.NotFound(f"host {address!r} does not exist")
                if record.cluster != expected:
                    raise _Stale()
                snap.delete(record)
                if current.of(HostCreds, address) is not None:
                    snap.delete(current.of(HostCreds, address))  # type: ignore[arg-type]
                group = current.get(("Cluster", expected)) if expected else None
                if isinstance(group, Cluster) and address in group.hostset:
                    group.hostset = [a for a in group.hostset if a != address]
                    snap.put(group)
                return record

            # Opaque creds: a host whose credentials do not open can be deleted.
            deleted = self.repo.change(keys, mutate, opaque=[("HostCreds", address)])
            self._announce(deleted, "deleted")
            return []

        return settled(f"host {address!r}", attempt, _Stale)

    # -- clusters and their members ---------------------------------------

    def get_cluster(self, name: str) -> dict[str, Any]:
        """A cluster with its computed status and host counts (what `get` answers)."""
        cluster = self.repo.require(Cluster, validate_name(name))
        hosts = {h.address: h.status for h in self.repo.list_all(Host) if h.cluster == name}
        statuses = [hosts.get(a, "failed") for a in cluster.hostset]
        return cluster.with_host_statuses(statuses).to_safe_dict()

    @bus_method()
    def cluster_hosts(self, name: str) -> list[str]:
        cluster = self.repo.require(Cluster, validate_name(name))
        return list(cluster.hostset)

    def _membership_change(self, name: str, addresses: list[str],
                           decide: Callable[[Cluster, dict[str, Host]], list[str]]) -> list[str]:
        """Set a cluster's members to decide(cluster, hosts) in one transaction."""
        name = validate_name(name)

        def attempt() -> list[str]:
            cluster = self.repo.require(Cluster, name)
            involved = sorted(set(addresses) | set(cluster.hostset))
            keys = [("Cluster", name, "")] + [("Host", a, "") for a in involved]

            def mutate(current: Current, snap: Snapshot,
                       involved: list[str] = involved) -> list[str]:
                group = current.of(Cluster, name)
                if not isinstance(group, Cluster):
                    raise errors.NotFound(f"cluster {name!r} does not exist")
                if not set(group.hostset) <= set(involved):
                    raise _Stale()
                hosts = {a: h for a in involved if isinstance(h := current.of(Host, a), Host)}
                members = decide(group, hosts)
                for address in members:
                    host = hosts.get(address)
                    if host is None:
                        raise errors.NotFound(f"host {address!r} does not exist; create it first")
                    if host.cluster and host.cluster != name:
                        raise errors.Conflict(
                            f"host {address!r} is already in cluster {host.cluster!r}")
                for address, host in hosts.items():
                    wanted = name if address in members else ""
                    if host.cluster != wanted and (host.cluster == name or wanted):
                        host.cluster = wanted
                        snap.put(host)
                if members != group.hostset:
                    group.hostset = members
                    snap.put(group)
                return members

            return self.repo.change(keys, mutate)

        return settled(f"cluster {name!r}", attempt, _Stale)

    @bus_method()
    def cluster_add_host(self, name: str, address: str) -> list[str]:
        address = validate_address(address)
        self._membership_change(
            name, [address],
            lambda c, _h: c.hostset if address in c.hostset else [*c.hostset, address])
        return [address]

    @bus_method()
    def cluster_remove_host(self, name: str, address: str) -> list[Any]:
        address = validate_address(address)
        self._membership_change(name, [], lambda c, _h: [a for a in c.hostset if a != address])
        return []

    @bus_method()
    def cluster_set_hosts(self, name: str, old: list[str], new: list[str]) -> list[str]:
        """Replace the member list, only if `old` is still the current list."""
        old = [validate_address(a, "old") for a in old]
        new = list(dict.fromkeys(validate_address(a, "new") for a in new))

        def decide(cluster: Cluster, _hosts: dict[str, Host]) -> list[str]:
            if sorted(old) != sorted(cluster.hostset):
                raise errors.Conflict(
                    "the cluster's host list is no longer the 'old' list given; "
                    "GET it again and retry")
            return new

        return self._membership_change(name, new, decide)

    def _delete_cluster(self, name: str) -> list[Any]:
        name = validate_name(name)

        def attempt() -> list[Any]:
            cluster = self.repo.require(Cluster, name)
            keys = [("Cluster", name, "")] + [("Host", a, "") for a in cluster.hostset]
            keys += [(cls.kind, name, "") for cls in OPERATIONS.values()]

            def mutate(current: Current, snap: Snapshot,
                       members: tuple[str, ...] = tuple(cluster.hostset)) -> Model:
                group = current.of(Cluster, name)
                if not isinstance(group, Cluster):
                    raise errors.NotFound(f"cluster {name!r} does not exist")
                if sorted(group.hostset) != sorted(members):
                    raise _Stale()
                for cls in OPERATIONS.values():
                    op = current.of(cls, name)
                    if op is not None and op.status == "in_process":
                        raise errors.Conflict(
                            f"cluster {name!r} has a {cls.operation} in process; abort it first")
                    if op is not None:
                        snap.delete(op)
                for address in members:
                    host = current.of(Host, address)
                    if isinstance(host, Host) and host.cluster == name:
                        host.cluster = ""
                        snap.put(host)
                snap.delete(group)
                return group

            deleted = self.repo.change(keys, mutate)
            self._announce(deleted, "deleted")
            return []

        return settled(f"cluster {name!r}", attempt, _Stale)

    # -- rolling operations (stored here, executed by clusterexec) --------

    @bus_method()
    def start_operation(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """Record a new operation over the cluster's current members; 409 if one runs."""
        cls = model_class(kind)
        if not issubclass(cls, ClusterOperation):
            raise errors.InvalidRequest(f"{kind} is not a cluster operation")
        new = cls.from_dict(record)
        name = validate_name(new.name)

        def attempt() -> dict[str, Any]:
            members = tuple(self.cluster_hosts(name))

            def mutate(current: Current, snap: Snapshot,
                       members: tuple[str, ...] = members) -> Model:
                cluster = current.of(Cluster, name)
                if not isinstance(cluster, Cluster):
                    raise errors.NotFound(f"cluster {name!r} does not exist")
                if tuple(cluster.hostset) != members:
                    raise _Stale()
                running = current.of(cls, name)
                if running is not None and running.status == "in_process":
                    raise errors.Conflict(
                        f"a {cls.operation} of cluster {name!r} is already in process")
                now = utcnow()
                new.status = "in_process"
                new.started_at = now
                new.finished_at = None
                # Each host's entry names the incarnation the operation is about.
                new.hosts = {a: {"state": "pending", "started_at": None, "finished_at": None,
                                 "reason": "", "uid": _uid_of(current.of(Host, a)),
                                 "events": [{"at": now, "event": "pending"}]}
                             for a in members}
                snap.put(new)
                return new

            keys = [("Cluster", name, ""), (kind, name, "")] + [("Host", a, "") for a in members]
            started = self.repo.change(keys, mutate)
            self._announce(started, "created")
            return started.to_safe_dict()

        return settled(f"cluster {name!r}", attempt, _Stale)

    @bus_method()
    def get_operation(self, kind: str, name: str) -> dict[str, Any]:
        self.repo.require(Cluster, validate_name(name))
        cls = model_class(kind)
        record = self.repo.get(kind, name)
        if record is None:
            raise errors.NotFound(f"cluster {name!r} has no {getattr(cls, 'operation', kind)} record")
        return record.to_safe_dict()

    @bus_method()
    def list_operations(self, status: str = "in_process") -> list[dict[str, Any]]:
        """Every operation with this status, of every kind (clusterexec resumes these)."""
        found = []
        for cls in OPERATIONS.values():
            for record in self.repo.list_all(cls):
                if not status or record.status == status:
                    found.append({"kind": cls.kind, **record.to_safe_dict()})
        return found

    @bus_method()
    def update_operation_host(self, kind: str, name: str, address: str, lease: int,
                              changes: dict[str, Any], event: str = "",
                              uid: str | None = None) -> dict[str, Any]:
        """Record one host's progress, atomically with the current record (an abort
        made meanwhile is kept), and only by the holder of the operation's lock.

        `uid`: the incarnation of the host the executor acted on. Progress (anything
        but closing the entry as failed or skipped) is refused with StaleRecord unless
        it is both the host's current incarnation and the one the operation started
        on: a host deleted and created again mid-operation is not part of it."""
        lock_name = f"{kind}.{name}"
        closing = changes.get("state") in ("failed", "skipped")
        before: dict[str, Any] = {}

        def mutate(current: Current, snap: Snapshot) -> Model:
            lock = current.of(OperationLock, lock_name)
            if lock is None or lock.lease != lease:
                raise errors.LeaseLost(f"the lock on {kind} {name!r} is not held with lease {lease}")
            op = current[(kind, name)]
            if not isinstance(op, ClusterOperation):
                raise errors.NotFound(f"cluster {name!r} has no {kind}")
            detail = op.hosts.setdefault(address, {"state": "pending", "started_at": None,
                                                   "finished_at": None, "reason": "",
                                                   "events": []})
            if not closing:
                started_on = detail.get("uid")  # absent: started before uids existed
                host_now = _uid_of(current.of(Host, address))
                if uid is None or uid != host_now or started_on not in (None, uid):
                    raise _stale(address, uid)
            if changes.get("state") == "in_process" and op.status != "in_process":
                raise errors.OperationStopped(f"the operation on {name!r} is {op.status}; "
                                              "no new host may start")
            before["state"] = detail.get("state")
            detail.update(changes)
            if event:
                detail["events"].append({"at": utcnow(), "event": event})
            snap.put(op)
            return op

        saved = self.repo.change([(kind, name, ""), ("OperationLock", lock_name, ""),
                                  ("Host", address, "")], mutate)
        self._announce(saved, "updated")
        state = changes.get("state")
        if state and state != before.get("state"):
            self._operation_event("step", kind, name, {
                "host": address, "state": state, "previous": before.get("state"),
                "event": event, "reason": changes.get("reason", "")})
        return saved.to_safe_dict()

    @bus_method()
    def finish_operation(self, kind: str, name: str, lease: int, status: str,
                         reason: str = "") -> dict[str, Any]:
        """Close an operation; an abort made meanwhile stays the final status."""
        lock_name = f"{kind}.{name}"

        def mutate(current: Current, snap: Snapshot) -> Model:
            lock = current.of(OperationLock, lock_name)
            if lock is None or lock.lease != lease:
                raise errors.LeaseLost(f"the lock on {kind} {name!r} is not held with lease {lease}")
            op = current[(kind, name)]
            if not isinstance(op, ClusterOperation):
                raise errors.NotFound(f"cluster {name!r} has no {kind}")
            if op.status == "in_process":
                op.status = status
                op.reason = reason
            op.finished_at = op.finished_at or utcnow()
            snap.put(op)
            return op

        saved = self.repo.change([(kind, name, ""), ("OperationLock", lock_name, "")], mutate)
        self._announce(saved, "updated")
        if isinstance(saved, ClusterOperation):
            self._operation_event("finish", kind, name, {"status": saved.status,
                                                         "reason": saved.reason})
        return saved.to_safe_dict()

    @bus_method()
    def abort_operation(self, kind: str, name: str) -> dict[str, Any]:
        """Stop an operation: hosts not yet started are skipped; status `aborted`."""
        name = validate_name(name)
        skipped: list[str] = []

        def mutate(current: Current, snap: Snapshot) -> Model:
            op = current[(kind, name)]
            if not isinstance(op, ClusterOperation):
                raise errors.NotFound(f"cluster {name!r} has no such operation")
            if op.status != "in_process":
                raise errors.Conflict(f"the operation on {name!r} is already {op.status}")
            now = utcnow()
            skipped.clear()
            for address, detail in op.hosts.items():
                if detail["state"] == "pending":
                    skipped.append(address)
                    detail["state"] = "skipped"
                    detail["events"].append({"at": now, "event": "skipped (aborted)"})
            op.status = "aborted"
            op.reason = "aborted by request"
            if not any(d["state"] == "in_process" for d in op.hosts.values()):
                op.finished_at = now
            snap.put(op)
            return op

        aborted = self.repo.change([(kind, name, "")], mutate)
        self._announce(aborted, "updated")
        for address in skipped:
            self._operation_event("step", kind, name, {
                "host": address, "state": "skipped", "previous": "pending",
                "event": "skipped (aborted)", "reason": ""}, actor=STORAGE)
        return aborted.to_safe_dict()


def _uid_of(host: Model | None) -> str | None:
    """The incarnation of a host record read in a transaction (None: no such host)."""
    return host.uid if isinstance(host, Host) else None


def kind_label(kind: str) -> str:
    return {"Cluster": "cluster", "Network": "network",
            "ContainerManagerConfig": "container manager"}.get(kind, kind)


__all__ = ["StorageService", "Network", "ContainerManagerConfig"]
