"""The container manager service: `container.<method>` on the bus.

Every call names a container manager record and a host address. The record is
read from the storage service on each call (so a changed or deleted record
takes effect at once); the client built from it is kept per (name, hash of the
record), so connections are reused until the record changes. The work itself
is in `managers` (what to do to a node) and `kube` (the REST API). Which API
servers may be called at all is this service's `allowed-urls` setting (`allow`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading

from commissaire import errors
from commissaire.bus.clients import Caller, StorageClient
from commissaire.validation import validate_address, validate_name
from commissaire_service.containermgr.allow import AllowedURLs
from commissaire_service.containermgr.kube import DEFAULT_CERTIFICATE_DIRS
from commissaire_service.containermgr.managers import (
    Drained,
    Manager,
    NodeStatus,
    Registered,
    Schedulability,
    build_manager,
)
from commissaire_service.service import Service, bus_method

logger = logging.getLogger(__name__)


class ContainerManagerService(Service):
    # DESIGN: container-manager calls are routed as container.<method>.
    name = "container"

    def __init__(self, bus: Caller | None = None, *, poll_interval: float = 1.0,
                 allowed_urls: AllowedURLs | None = None,
                 certificate_dirs: tuple[str, ...] = DEFAULT_CERTIFICATE_DIRS) -> None:
        """`poll_interval`: seconds between checks while a drain waits on pods;
        `allowed_urls`: the API servers it may call (None: none);
        `certificate_dirs`: where certificate/key files named by options may be."""
        super().__init__()
        self.storage = None if bus is None else StorageClient(bus)
        self.poll_interval = poll_interval
        self.allowed_urls = allowed_urls or AllowedURLs()
        self.certificate_dirs = certificate_dirs
        self._managers: dict[str, tuple[str, Manager]] = {}
        self._lock = threading.Lock()

    def health(self) -> dict[str, object]:
        facts: dict[str, object] = {"service_process": "containermgr",
                                 "clients": len(self._managers)}
        if self.storage is None:
            facts["problem"] = "built without a bus client: cannot read container managers"
        return facts

    def stop(self) -> None:
        with self._lock:
            for _, manager in self._managers.values():
                manager.close()
            self._managers.clear()

    # -- exposed methods ---------------------------------------------------

    @bus_method()
    def register_node(self, container_manager: str, address: str) -> Registered:
        """Register the host's node; an existing node is success."""
        return self._manager(container_manager).register_node(validate_address(address))

    @bus_method()
    def get_node_status(self, container_manager: str, address: str) -> NodeStatus:
        """Readiness, schedulability and conditions; status "absent" when no node."""
        return self._manager(container_manager).node_status(validate_address(address))

    @bus_method()
    def node_ready(self, container_manager: str, address: str) -> bool:
        """True only when the node exists and its Ready condition is True."""
        return bool(self.get_node_status(container_manager, address)["ready"])

    @bus_method()
    def cordon(self, container_manager: str, address: str) -> Schedulability:
        """Mark the node unschedulable; NotFound when there is no node."""
        return self._manager(container_manager).set_unschedulable(
            validate_address(address), True)

    @bus_method()
    def uncordon(self, container_manager: str, address: str) -> Schedulability:
        """Mark the node schedulable again; NotFound when there is no node."""
        return self._manager(container_manager).set_unschedulable(
            validate_address(address), False)

    @bus_method()
    def drain(self, container_manager: str, address: str,
              timeout: float = 60) -> Drained:
        """Cordon, then evict the node's pods and wait they are gone, within `timeout` s."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise errors.ValidationError("must be a positive number of seconds", field="timeout")
        return self._manager(container_manager).drain(validate_address(address),
                                                      float(timeout))

    # -- clients per record --------------------------------------------------

    def _manager(self, container_manager: str) -> Manager:
        name = validate_name(container_manager, field="container_manager")
        if self.storage is None:
            raise errors.ContainerManagerError(
                "this container manager service was built without a bus client, so it "
                "cannot read container manager records")
        record = self.storage.reveal_container_manager(name)
        type_name = str(record.type or "")
        options = dict(record.options or {})
        digest = hashlib.sha256(json.dumps([type_name, options], sort_keys=True,
                                           default=str).encode()).hexdigest()
        with self._lock:
            cached = self._managers.get(name)
            if cached is not None and cached[0] == digest:
                return cached[1]
            manager = build_manager(name, type_name, options, poll_interval=self.poll_interval,
                                    allowed=self.allowed_urls,
                                    certificate_dirs=self.certificate_dirs)
            # The replaced client may still serve a call in flight; its session
            # and temporary files go when the last reference does.
            self._managers[name] = (digest, manager)
        if cached is not None:
            logger.info("container manager %s changed; using a new client", name)
        return manager
