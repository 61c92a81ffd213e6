"""The investigator: new host → investigating → bootstrapping → active.

It hears of new hosts from storage notifications, pins each host's SSH key,
then runs one Ansible run for every host that arrived together (facts, then bootstrap), so 50 hosts registered at once cost
about one `ansible-playbook` with forks, not 50. Facts are recorded, and the host
moved to `bootstrapping`, as soon as its facts task reports. A host whose cluster
has a container manager is registered with it and becomes `active`; otherwise it
is `disassociated`. Any failure leaves the host `failed` with a reason a person
can act on.

Facts are the host's word: they are checked (facts.py) before they are stored;
an OS that maps onto no known profile fails the host with "unsupported OS".
The host key is always pinned (fetched over SSH) before Ansible connects, so no
run ever turns host-key checking off.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from commissaire import errors
from commissaire.ansible import runner
from commissaire.bus.clients import Caller, ContainerClient, StorageClient
from commissaire.models import Cluster, Host, Network, utcnow
from commissaire.reach import log_safe, unreachable_reason
from commissaire.ssh import check_private_key, fetch_host_key, fingerprint, host_target
from commissaire_service.investigator import facts as host_facts
from commissaire_service.investigator.changes import summarize
from commissaire_service.investigator.settings import BootstrapSettings
from commissaire_service.service import Service, on_notification

logger = logging.getLogger(__name__)

PREPARE_THREADS = 8  # hosts of a batch whose key is fetched and pinned at once


class InvestigatorService(Service):
    name = "investigator"

    def __init__(self, bus: Caller, batch_window: float = 0.5, max_batch: int = 200,
                 ssh: runner.SSHSettings | None = None,
                 bootstrap: BootstrapSettings | None = None) -> None:
        super().__init__()
        self.storage = StorageClient(bus)
        self.container = ContainerClient(bus)
        self.batch_window = batch_window
        self.max_batch = max_batch
        self.ssh = ssh or runner.SSHSettings()
        # Where the bootstrap gets components from (admin config, checked at start-up).
        self.bootstrap = bootstrap or BootstrapSettings()
        self._queue: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()
        # Why a host's facts were refused, while its run goes on (address -> reason).
        self._refused_facts: dict[str, str] = {}
        # What each host's bootstrap changed, for the log line at its end.
        self._changes: dict[str, str] = {}
        # Run dirs (with private keys) a killed predecessor left behind.
        runner.remove_stale_run_dirs()
        # address -> the incarnation (uid) being investigated; every update names it.
        self._uids: dict[str, str] = {}
        self._worker = threading.Thread(target=self._work, name="investigator", daemon=True)
        self._worker.start()

    def health(self) -> dict[str, object]:
        return {"queued": self._queue.qsize()}

    def stop(self) -> None:
        self._stopping.set()

    # -- entry points ----------------------------------------------------

    @on_notification("notify.storage.Host.created")
    def on_host_created(self, record: dict[str, Any]) -> None:
        self._queue.put(record["address"])

    # -- the work --------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            batch = [first]
            # Hosts registered together are investigated together.
            deadline_wait = self.batch_window
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=deadline_wait))
                except queue.Empty:
                    break
            try:
                self.run_batch(list(dict.fromkeys(batch)))
            except Exception:
                logger.exception("investigation of %d host(s) failed unexpectedly", len(batch))
                for address in batch:
                    self._fail(address, "investigation failed unexpectedly; see the "
                                        "investigator's log")
            for address in batch:
                self._uids.pop(address, None)
                self._changes.pop(address, None)

    def run_batch(self, addresses: list[str]) -> None:
        for address in addresses:
            self._refused_facts.pop(address, None)  # nothing left from an earlier run
            self._changes.pop(address, None)
        # Host keys are fetched side by side: one after the other, 50 hosts waited
        # ~7 s (an SSH key exchange and three store calls each) before Ansible began.
        with ThreadPoolExecutor(max_workers=min(PREPARE_THREADS, len(addresses)),
                                thread_name_prefix="investigator-prepare") as pool:
            targets = [t for t in pool.map(self._prepare, addresses) if t is not None]
        if not targets:
            return
        logger.info("investigating %d host(s)", len(targets))
        result = runner.run_playbook("investigate.yml", targets, settings=self.ssh,
                                     on_ok=self._on_task_ok)
        for target in targets:
            outcome = result.hosts[target.address]
            refused = self._refused_facts.pop(target.address, "")  # set by _on_task_ok
            if refused or outcome.outcome != runner.OK:
                self._fail(target.address, refused or outcome.message)
                continue
            self._finish(target)

    def _prepare(self, address: str) -> runner.Target | None:
        """Everything needed to act on a host, and its host key pinned; None if failed."""
        try:
            host = self.storage.get_host(address)
        except errors.NotFound:
            return None  # deleted meanwhile
        if host.status != "investigating":
            return None
        # Everything learned from here on is about this incarnation only.
        self._uids[address] = host.uid
        try:
            creds = self.storage.reveal_creds(address, uid=host.uid)
        except (errors.NotFound, errors.StaleRecord):
            return None  # deleted (and created again: that record has its own job)
        except errors.SecretsUnavailable as exc:
            self._fail(address, exc.description)  # e.g. credentials stored unencrypted
            return None
        try:
            access = host_target(host.to_dict(), creds.to_dict())
        except errors.SecretsUnavailable:
            self._fail(address, "the private key is not a valid SSH private key")
            return None
        problem = check_private_key(access.private_key)
        if problem:
            self._fail(address, problem)
            return None
        port = access.port
        refused = self.ssh.reach.refusal(address)
        if refused:  # outside ssh-allowed-networks: say so, in our words
            self._fail(address, refused)
            return None
        try:
            offered = asyncio.run(fetch_host_key(address, port, timeout=self.ssh.connect_timeout,
                                                 reach=self.ssh.reach))
        except (TimeoutError, OSError, Exception) as exc:  # noqa: B014
            logger.info("fetching the host key of %s:%s failed: %s", address, port,
                        log_safe(str(exc) or type(exc).__name__))
            self._fail(address, unreachable_reason(address, port))
            return None
        pinned = host.ssh_host_key or ""
        if pinned and pinned != offered:
            self._fail(address, f"the SSH host key of {address} changed since it was pinned "
                                f"({host.host_key_fingerprint} → {fingerprint(offered)}); "
                                "refusing to connect")
            return None
        if not pinned and not self._update(address, {
                "ssh_host_key": offered, "host_key_fingerprint": fingerprint(offered)}):
            return None
        return runner.Target.of(dataclasses.replace(access, host_key=offered),
                                self._cluster_vars(address, host))

    def _cluster_vars(self, address: str, host: Host) -> dict[str, object]:
        """Bootstrap variables from the host's cluster, its network and container
        manager, and the admin's bootstrap settings (mirrors, pins, keys)."""
        hostvars: dict[str, object] = {"commissaire_bootstrap_ip": address,
                                    "commissaire_cluster": host.cluster,
                                    "commissaire_container_runtime": "",
                                    **self.bootstrap.hostvars()}
        if not host.cluster:
            return hostvars
        cluster = self.storage.get(Cluster, host.cluster)
        # "" (or a cluster stored before the field): the OS profile's default.
        hostvars["commissaire_container_runtime"] = cluster.container_runtime or ""
        network = self.storage.get(Network, cluster.network)
        hostvars["commissaire_network_name"] = network.name
        hostvars["commissaire_network_type"] = network.type
        options = network.options or {}
        if network.type == "flannel_server":
            hostvars["commissaire_flanneld_server"] = options.get("address", "")
        else:
            # The network's own etcd if it names one, else the store's (seed chapter 9).
            hostvars["commissaire_etcd_server_url"] = options.get("etcd_server_url") or \
                self.storage.etcd_endpoint()
            hostvars["commissaire_flannel_key"] = options.get("flannel_key",
                                                              "/atomic.io/network")
        if cluster.container_manager:
            manager = self.storage.reveal_container_manager(cluster.container_manager)
            manager_options = manager.options or {}
            hostvars["commissaire_container_manager"] = manager.name
            hostvars["commissaire_container_manager_type"] = manager.type
            hostvars["commissaire_kubernetes_api_server_url"] = (
                manager_options.get("server_url") or manager_options.get("apiserver") or "")
            hostvars["commissaire_kubernetes_bearer_token"] = manager_options.get("token", "")
        return hostvars

    def _on_task_ok(self, address: str, task: str, res: runner.TaskResult) -> None:
        """Record facts the moment they arrive, and move the host to bootstrapping."""
        if task == "Record what the bootstrap changed":
            changes = (res.get("ansible_facts") or {}).get("commissaire_bootstrap_changes")
            self._changes[address] = summarize(changes)
            return
        if task != "Record facts":
            return
        facts = (res.get("ansible_facts") or {}).get("commissaire_facts")
        changes, problem = host_facts.checked(facts if isinstance(facts, dict) else {})
        if problem:
            # Stored as the reason when the run ends (the playbook refuses the OS too).
            self._refused_facts[address] = problem
            return
        self._update(address, {**changes, "status": "bootstrapping", "last_check": utcnow()})

    def _finish(self, target: runner.Target) -> None:
        manager = target.hostvars.get("commissaire_container_manager")
        status = "disassociated"
        reason = ""
        if isinstance(manager, str) and manager:  # a name, set by _cluster_vars
            try:
                self.container.register_node(manager, target.address)
                status = "active"
            except errors.CommissaireError as exc:
                self._fail(target.address, f"bootstrapped, but registering the node with "
                                           f"container manager {manager!r} failed: "
                                           f"{exc.description}")
                return
        if self._update(target.address, {"status": status, "status_reason": reason,
                                         "bootstrapped": True, "last_check": utcnow()}):
            # A second bootstrap says "nothing to change" here.
            logger.info("host %s bootstrapped, %s: %s", target.address, status,
                        self._changes.pop(target.address, "") or "no record of changes")

    def _fail(self, address: str, reason: str) -> None:
        logger.warning("host %s failed: %s", address, reason)
        self._update(address, {"status": "failed", "status_reason": reason,
                               "last_check": utcnow()})

    def _update(self, address: str, changes: dict[str, object]) -> bool:
        """Record `changes` on the incarnation being investigated; False if it is gone."""
        uid = self._uids.get(address)
        if uid is None:
            logger.warning("host %s: no incarnation known; not recording %s", address,
                           ", ".join(sorted(changes)))
            return False
        try:
            self.storage.update_host(address, changes, uid=uid)
            return True
        except errors.NotFound:
            logger.info("host %s was deleted during its investigation", address)
        except errors.StaleRecord:
            logger.info("host %s was deleted and created again during its investigation; "
                        "the new record is investigated on its own", address)
        return False
