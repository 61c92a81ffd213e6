"""What Commissaire does to a host's node in its container manager.

One class per behaviour: `TrivialManager` (no container manager to talk to:
everything succeeds, nothing leaves the process) and `KubernetesManager`
(Kubernetes and OpenShift, through `kube.KubeClient`). A node is named after
the host's address, as the bootstrap playbook registers the kubelet.

Cordon and uncordon send a strategic merge patch of `spec.unschedulable`, as
kubectl does; a server that refuses the patch type gets a read-modify-write PUT
instead, retried when a concurrent writer changed the node in between (409 on
a stale resourceVersion). Drain follows `kubectl drain`: cordon, evict every
pod on the node through the Eviction API (so PodDisruptionBudgets are obeyed)
except mirror pods and DaemonSet pods, then wait until the evicted pods are gone.

Nothing an API server sends is passed on as text: errors carry the status code
and our own words; node conditions keep only their type, status, reason and
time when they have the shapes Kubernetes gives them; pod names are shown only
when they are valid Kubernetes names.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypedDict

from commissaire import errors
from commissaire_service.containermgr.allow import AllowedURLs
from commissaire_service.containermgr.kube import (
    DEFAULT_CERTIFICATE_DIRS,
    ApiConflict,
    ApiError,
    ApiNotFound,
    ApiTooManyRequests,
    ApiUnsupported,
    Json,
    KubeClient,
    KubeSettings,
)

logger = logging.getLogger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Shapes of what Kubernetes sends: anything else from a server is not shown.
_CONDITION_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class Condition(TypedDict):
    """A node condition as passed on: its free-text message is left out."""

    type: str
    status: str
    reason: str
    last_transition_time: str | None


class Registered(TypedDict):
    """What `register_node` answers."""

    container_manager: str
    type: str
    node: str
    registered: bool
    created: bool


class NodeStatus(TypedDict):
    """What `node_status` answers."""

    container_manager: str
    type: str
    node: str
    ready: bool
    status: str
    unschedulable: bool
    conditions: list[Condition]


class Schedulability(TypedDict):
    """What `set_unschedulable` answers."""

    container_manager: str
    type: str
    node: str
    unschedulable: bool
    changed: bool


class Drained(TypedDict):
    """What `drain` answers."""

    container_manager: str
    type: str
    node: str
    unschedulable: bool
    evicted: list[str]
    skipped: list[str]


class Manager:
    """The operations every container manager type supports."""

    type_name = ""

    def __init__(self, name: str) -> None:
        self.name = name

    def _registered(self, address: str, created: bool) -> Registered:
        return Registered(container_manager=self.name, type=self.type_name, node=address,
                          registered=True, created=created)

    def _status(self, address: str, status: str, unschedulable: bool,
                conditions: list[Condition]) -> NodeStatus:
        return NodeStatus(container_manager=self.name, type=self.type_name, node=address,
                          ready=status == "Ready", status=status,
                          unschedulable=unschedulable, conditions=conditions)

    def _schedulability(self, address: str, value: bool, changed: bool) -> Schedulability:
        return Schedulability(container_manager=self.name, type=self.type_name,
                              node=address, unschedulable=value, changed=changed)

    def _drained(self, address: str, evicted: list[str], skipped: list[str]) -> Drained:
        return Drained(container_manager=self.name, type=self.type_name, node=address,
                       unschedulable=True, evicted=evicted, skipped=skipped)

    def register_node(self, address: str) -> Registered:
        raise NotImplementedError

    def node_status(self, address: str) -> NodeStatus:
        raise NotImplementedError

    def set_unschedulable(self, address: str, value: bool) -> Schedulability:
        raise NotImplementedError

    def drain(self, address: str, timeout: float) -> Drained:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class TrivialManager(Manager):
    """No container manager: every call succeeds and nothing is contacted."""

    type_name = "trivial"

    def register_node(self, address: str) -> Registered:
        return self._registered(address, created=False)

    def node_status(self, address: str) -> NodeStatus:
        # Ready, though its status word is "ok": there is no node to read.
        return NodeStatus(container_manager=self.name, type=self.type_name, node=address,
                          ready=True, status="ok", unschedulable=False, conditions=[])

    def set_unschedulable(self, address: str, value: bool) -> Schedulability:
        return self._schedulability(address, value, changed=False)

    def drain(self, address: str, timeout: float) -> Drained:  # noqa: ARG002  (no pods to wait for)
        return self._drained(address, evicted=[], skipped=[])


class KubernetesManager(Manager):
    """A Kubernetes (or OpenShift) API server."""

    def __init__(self, name: str, type_name: str, settings: KubeSettings, *,
                 poll_interval: float = 1.0, conflict_retries: int = 5,
                 sleep: Callable[[float], None] = time.sleep,
                 allowed: AllowedURLs | None = None,
                 certificate_dirs: tuple[str, ...] = DEFAULT_CERTIFICATE_DIRS) -> None:
        super().__init__(name)
        self.type_name = type_name
        self.client = KubeClient(settings, name, allowed, certificate_dirs)
        self.poll_interval = poll_interval
        self.conflict_retries = conflict_retries
        self._sleep = sleep
        # Flipped for good when this server refuses the patch (some proxies do).
        self._patch_works = True

    def close(self) -> None:
        self.client.close()

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn API answers nobody handled into the product's errors."""
        try:
            yield
        except ApiNotFound as exc:
            raise errors.NotFound(f"{what}: not found in container manager {self.name!r} "
                                  f"(HTTP {exc.code})") from None
        except ApiError as exc:
            raise errors.ContainerManagerError(
                f"{what}: container manager {self.name!r} answered HTTP {exc.code}") from None

    def _check_name(self, address: str) -> None:
        try:
            if ipaddress.ip_address(address).version == 6:
                raise errors.ValidationError(
                    "an IPv6 address cannot be a Kubernetes node name", field="address")
        except ValueError:
            pass

    # -- nodes ---------------------------------------------------------------

    def register_node(self, address: str) -> Registered:
        """Create the Node; one that already exists is success."""
        self._check_name(address)
        with self._calling(f"registering node {address}"):
            try:
                self.client.create_node(address)
            except ApiConflict:
                logger.info("node %s already exists in %s", address, self.name)
                return self._registered(address, created=False)
        logger.info("registered node %s with container manager %s", address, self.name)
        return self._registered(address, created=True)

    def node_status(self, address: str) -> NodeStatus:
        """Ready/NotReady/Unknown from the Ready condition; "absent" for no Node."""
        self._check_name(address)
        with self._calling(f"reading node {address}"):
            try:
                node = self.client.get_node(address)
            except ApiNotFound:
                return self._status(address, "absent", unschedulable=False, conditions=[])
        found = _object(node.get("status")).get("conditions")
        # Only the conditions shaped as Kubernetes sends them.
        conditions = [_condition(c) for c in (found if isinstance(found, list) else [])
                      if isinstance(c, dict) and _word(c.get("type"))]
        ready = next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown")
        status = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
        return self._status(address, status, unschedulable=_unschedulable(node),
                            conditions=conditions)

    def set_unschedulable(self, address: str, value: bool) -> Schedulability:
        """Cordon (True) or uncordon (False); NotFound when there is no Node."""
        self._check_name(address)
        verb = "cordoning" if value else "uncordoning"
        with self._calling(f"{verb} node {address}"):
            node = self.client.get_node(address)
            if _unschedulable(node) == value:
                return self._schedulability(address, value, changed=False)
            if self._patch_works:
                try:
                    # null removes the field, as kubectl uncordon leaves it.
                    self.client.patch_node(address, {"spec": {"unschedulable": value or None}})
                except ApiUnsupported as exc:
                    logger.warning("container manager %s refuses a strategic merge patch "
                                   "(%r); using read-modify-write PUT", self.name,
                                   exc.message[:200])
                    self._patch_works = False
                else:
                    logger.info("%s node %s in %s", verb, address, self.name)
                    return self._schedulability(address, value, changed=True)
            changed = self._put_unschedulable(address, value, node)
        logger.info("%s node %s in %s", verb, address, self.name)
        return self._schedulability(address, value, changed=changed)

    def _put_unschedulable(self, address: str, value: bool, node: dict[str, Json]) -> bool:
        """Read-modify-write with the node's resourceVersion; retry when it went stale."""
        for attempt in range(1, self.conflict_retries + 1):
            if _unschedulable(node) == value:
                return False
            spec = node.setdefault("spec", {})
            if not isinstance(spec, dict):
                raise TypeError("a node's spec is an object")
            if value:
                spec["unschedulable"] = True
            else:
                spec.pop("unschedulable", None)
            try:
                self.client.replace_node(node)
                return True
            except ApiConflict:
                logger.info("node %s changed while we updated it (attempt %d); reading it "
                            "again", address, attempt)
                node = self.client.get_node(address)
        raise errors.ContainerManagerError(
            f"node {address} in container manager {self.name!r} kept changing under us; "
            f"gave up after {self.conflict_retries} conflicting updates")

    # -- drain -----------------------------------------------------------------

    def drain(self, address: str, timeout: float) -> Drained:
        """Cordon, evict the node's pods within `timeout` seconds, wait until gone."""
        deadline = time.monotonic() + timeout
        self.set_unschedulable(address, True)
        with self._calling(f"draining node {address}"):
            to_evict: dict[str, dict[str, Json]] = {}
            skipped: list[str] = []
            terminating: dict[str, str] = {}
            for pod in self.client.pods_on_node(address):
                key, why = _pod_key(pod), _skip_reason(pod)
                if not _valid_key(key):  # no such pod in a real cluster; not shown
                    skipped.append("(a pod with an invalid name)")
                elif why:
                    skipped.append(f"{key} ({why})")
                elif _object(pod.get("metadata")).get("deletionTimestamp"):
                    terminating[key] = _uid(pod)
                else:
                    to_evict[key] = pod
            evicted = self._evict_all(address, to_evict, deadline, timeout)
            waiting = {**terminating, **{k: _uid(to_evict[k]) for k in evicted}}
            self._wait_gone(address, waiting, deadline, timeout)
        logger.info("drained node %s in %s: %d pod(s) evicted", address, self.name,
                    len(evicted))
        return self._drained(address, evicted=sorted(evicted), skipped=sorted(skipped))

    def _evict_all(self, address: str, pods: dict[str, dict[str, Json]], deadline: float,
                   timeout: float) -> list[str]:
        """Evict each pod, retrying the ones a disruption budget blocks until the deadline."""
        remaining = dict(pods)
        evicted: list[str] = []
        while True:
            blocked: dict[str, str] = {}
            for key in list(remaining):
                namespace, name = key.split("/", 1)
                try:
                    self.client.evict(namespace, name)
                    evicted.append(key)
                except ApiNotFound:
                    pass  # gone already
                except ApiTooManyRequests as exc:
                    blocked[key] = f"HTTP {exc.code}"
                    continue
                del remaining[key]
            if not remaining:
                return evicted
            left = deadline - time.monotonic()
            if left <= 0:
                names = ", ".join(sorted(blocked))
                raise errors.ContainerManagerError(
                    f"draining node {address} timed out after {timeout:g} s: a "
                    f"PodDisruptionBudget blocks the eviction of pod {names} "
                    f"(the eviction API answered {blocked[min(blocked)]}); the node stays "
                    "cordoned",
                    blocking_pods=sorted(blocked))
            self._sleep(min(self.poll_interval, left))

    def _wait_gone(self, address: str, pods: dict[str, str], deadline: float,
                   timeout: float) -> None:
        """Poll the node's pods until none of `pods` (key -> uid) remains."""
        while pods:
            present = {_pod_key(p): _uid(p) for p in self.client.pods_on_node(address)}
            pods = {k: uid for k, uid in pods.items() if present.get(k) == uid}
            if not pods:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.ContainerManagerError(
                    f"draining node {address} timed out after {timeout:g} s: pod(s) "
                    f"{', '.join(sorted(pods))} were evicted but are still terminating; "
                    "the node stays cordoned", terminating_pods=sorted(pods))
            self._sleep(min(self.poll_interval, left))


def _object(value: object) -> dict[str, object]:
    """A field that holds a JSON object; {} when it is absent or null."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"an object was expected, not {type(value).__name__}")
    return value


def _objects(value: object) -> list[dict[str, object]]:
    """A field that holds an array of JSON objects; [] when it is absent or null."""
    if not value:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError("an array of objects was expected")
    return [v for v in value if isinstance(v, dict)]


def _word(value: object) -> str:
    """A condition type or reason as Kubernetes writes them (CamelCase), else ""."""
    return value if isinstance(value, str) and _CONDITION_WORD.fullmatch(value) else ""


def _condition(c: Mapping[str, object]) -> Condition:
    """Type, status, reason and time of a node condition; its free-text message is
    the API server's words and is not passed on."""
    status = c.get("status")
    when = c.get("lastTransitionTime")
    return {"type": _word(c.get("type")),
            "status": status if isinstance(status, str) and status in ("True", "False",
                                                                       "Unknown")
            else "Unknown",
            "reason": _word(c.get("reason")),
            "last_transition_time": when if isinstance(when, str) and _TIME.fullmatch(when)
            else None}


def _unschedulable(node: Mapping[str, object]) -> bool:
    return bool(_object(node.get("spec")).get("unschedulable"))


def _pod_key(pod: Mapping[str, object]) -> str:
    meta = _object(pod.get("metadata"))
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def _valid_key(key: str) -> bool:
    """namespace/name of valid Kubernetes names (anything else is not shown)."""
    namespace, _, name = key.partition("/")
    return all(isinstance(p, str) and _DNS_NAME.fullmatch(p) for p in (namespace, name))


def _uid(pod: Mapping[str, object]) -> str:
    return str(_object(pod.get("metadata")).get("uid", ""))


def _skip_reason(pod: Mapping[str, object]) -> str:
    """Why drain leaves this pod alone, or ""."""
    meta = _object(pod.get("metadata"))
    if MIRROR_ANNOTATION in _object(meta.get("annotations")):
        return "mirror pod"
    for owner in _objects(meta.get("ownerReferences")):
        if owner.get("kind") == "DaemonSet" and owner.get("controller"):
            return "DaemonSet"
    return ""


def build_manager(name: str, type_name: str, options: Mapping[str, object], *,
                  poll_interval: float = 1.0, allowed: AllowedURLs | None = None,
                  certificate_dirs: tuple[str, ...] = DEFAULT_CERTIFICATE_DIRS) -> Manager:
    """The manager for one ContainerManagerConfig record."""
    if type_name == "trivial":
        return TrivialManager(name)
    if type_name in ("kubernetes", "openshift"):
        return KubernetesManager(name, type_name, KubeSettings.from_options(options),
                                 poll_interval=poll_interval, allowed=allowed,
                                 certificate_dirs=certificate_dirs)
    raise errors.ContainerManagerError(
        f"container manager {name!r} has type {type_name!r}, which this service does not "
        "support (kubernetes, openshift, trivial)")
