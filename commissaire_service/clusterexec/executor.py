"""Runs one rolling operation to its end, resuming from its stored record.

The record is the truth: each host goes pending → in_process → done | failed
(or skipped), and every step is stored before it is taken. A host is started
only while the budget allows it (hosts in flight plus hosts already unhealthy
never exceed max_unavailable). Actions are idempotent on the host (a marker per
operation), so an executor that resumes after a crash never acts twice. Each
host passes a health gate before it counts as done: reachable over SSH, a new
boot id, the requested version for a deploy, and its node Ready when the cluster
has a container manager (cordoned and drained before, uncordoned after).
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

from commissaire import errors
from commissaire.ansible import runner
from commissaire.bus.clients import Caller, ContainerClient, StorageClient
from commissaire.models import OPERATIONS, Cluster, ClusterDeploy, ClusterOperation, utcnow
from commissaire.ssh import BOOT_ID_COMMAND, ProbeResult, host_target, probe
from commissaire_service.clusterexec import budget
from commissaire_service.clusterexec.batch import PlaybookBatcher

logger = logging.getLogger(__name__)

VERSION_COMMAND = (
    "if [ -e /run/ostree-booted ] || [ -e /etc/commissaire-lab ]; then rpm-ostree status --json | python3 -c "
    "'import json,sys; print(next(d.get(\"version\",\"\") for d in json.load(sys.stdin)"
    "[\"deployments\"] if d.get(\"booted\")))'; else . /etc/os-release; echo \"$VERSION_ID\"; fi")

GATE_PROBE_TIMEOUT = 5.0  # seconds for one health-gate probe to connect and answer
LOOP_POLL = 0.5  # at most this long between two looks at the operation's record
# Seconds a cordon, uncordon or readiness call to the container manager may take.
MANAGER_CALL_TIMEOUT = 70.0


class LostLock(Exception):
    """Another executor owns the operation now: stop touching it."""


class Settings:
    def __init__(self, gate_timeout: float = 600.0, poll: float = 0.1,
                 ssh: runner.SSHSettings | None = None, batch_window: float = 0.15) -> None:
        self.gate_timeout = gate_timeout
        self.poll = poll
        self.batch_window = batch_window
        self.ssh = ssh or runner.SSHSettings()


class Executor:
    """One operation (kind, cluster name), run under the lease `lease`."""

    def __init__(self, bus: Caller, kind: str, name: str, lease: int, settings: Settings,
                 lost: threading.Event) -> None:
        self.storage = StorageClient(bus)
        self.container = ContainerClient(bus, timeout=MANAGER_CALL_TIMEOUT)
        self.kind = kind
        self.name = name
        self.lease = lease
        self.settings = settings
        self.lost = lost
        self.operation = OPERATIONS[next(k for k, c in OPERATIONS.items() if c.kind == kind)]
        self._threads: dict[str, threading.Thread] = {}
        # address -> the incarnation (uid) of the host record acted on; named in updates.
        self._uids: dict[str, str] = {}
        self._wake = threading.Event()
        self.max_seen_unavailable = 0
        self._batcher = PlaybookBatcher(
            lambda playbook, targets, extravars: runner.run_playbook(
                playbook, targets, extravars=extravars, settings=settings.ssh),
            window=settings.batch_window)

    # -- store access ------------------------------------------------------

    def record(self) -> ClusterOperation:
        return self.storage.get_operation(self.operation, self.name)

    def update(self, address: str, event: str, **changes: object) -> ClusterOperation:
        if self.lost.is_set():
            raise LostLock()
        try:
            return self.storage.update_operation_host(
                self.operation, self.name, address, self.lease, changes, event=event,
                uid=self._uids.get(address))
        except errors.LeaseLost:
            self.lost.set()
            raise LostLock() from None

    def operation_id(self, op: ClusterOperation) -> str:
        raw = f"{self.operation.operation}-{self.name}-{op.started_at or ''}"
        return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)

    # -- the loop ------------------------------------------------------------

    def run(self) -> ClusterOperation:
        op = self.record()
        members = list(op.hosts)
        allowed = budget.limit(op.options.get("max_unavailable"), len(members))
        tolerance = int(op.options.get("failure_tolerance", 0))
        logger.info("%s of %s: %d host(s), at most %d down at once", self.operation.operation,
                    self.name, len(members), allowed)
        while not self.lost.is_set():
            op = self.record()
            hosts = op.hosts
            states = {a: hosts[a]["state"] for a in members}
            failed = [a for a, s in states.items() if s == "failed"]
            running = [a for a in members if a in self._threads and self._threads[a].is_alive()]
            # Hosts recorded in_process but with no thread here: resumed from a crash.
            for address in members:
                if states[address] == "in_process" and address not in running:
                    self._start(address, op)
                    running.append(address)
            stopping = op.status != "in_process" or len(failed) > tolerance
            # A host whose thread started but has not stored in_process yet is not pending.
            pending = [a for a in members if states[a] == "pending" and a not in running]
            if stopping or not pending:
                if not running:
                    return self._finish(op, failed, tolerance)
            else:
                unhealthy = self._unhealthy_idle(members, states, running)
                slots = budget.free_slots(allowed, len(running), len(unhealthy))
                for address in pending[:slots]:
                    self._start(address, op)
                    running.append(address)
                self.max_seen_unavailable = max(self.max_seen_unavailable,
                                                len(running) + len(unhealthy))
            # Woken at once when a host finishes; the timeout only bounds how late
            # an abort or a resumed host is noticed.
            self._wake.wait(max(self.settings.poll, LOOP_POLL))
            self._wake.clear()
        raise LostLock()

    def _unhealthy_idle(self, members: list[str], states: dict[str, str],
                        running: list[str]) -> list[str]:
        """Members down before we touched them (failed status, not being acted on)."""
        page = self.storage.list_hosts(cluster=self.name)
        down = {h.address for h in page.items if h.status == "failed"}
        return [a for a in members if a in down and a not in running
                and states[a] not in ("done",)]

    def _finish(self, op: ClusterOperation, failed: list[str],
                tolerance: int) -> ClusterOperation:
        for address, detail in op.hosts.items():
            if detail["state"] == "pending":
                self.update(address, "skipped: the operation stopped", state="skipped")
        if failed and len(failed) > tolerance:
            status, reason = "failed", f"{len(failed)} host(s) failed: {', '.join(failed)}"
        else:
            status, reason = "finished", (f"{len(failed)} host(s) failed within the tolerance"
                                          if failed else "")
        return self.storage.finish_operation(self.operation, self.name, self.lease, status,
                                             reason)

    def _start(self, address: str, op: ClusterOperation) -> None:
        thread = threading.Thread(target=self._host, args=(address, op), daemon=True,
                                  name=f"{self.operation.operation}-{address}")
        self._threads[address] = thread
        thread.start()

    # -- one host --------------------------------------------------------------

    def _host(self, address: str, op: ClusterOperation) -> None:
        try:
            self._act_on(address, op)
        except LostLock:
            logger.warning("lost the lock on %s of %s while on %s", self.kind, self.name, address)
        except errors.StaleRecord:
            # Deleted (and perhaps created again) meanwhile: the new record is no part
            # of this operation and is not touched; the old one's entry is closed.
            try:
                self.update(address, "skipped: the host was deleted or created again during "
                            "the operation", state="skipped", finished_at=utcnow(),
                            reason="the host was deleted or created again during the operation")
            except (LostLock, errors.CommissaireError):
                pass
        except errors.SecretsUnavailable as exc:  # e.g. credentials stored unencrypted
            try:
                self.update(address, f"failed: {exc.description}", state="failed",
                            finished_at=utcnow(), reason=exc.description)
            except (LostLock, errors.CommissaireError):
                pass
        except Exception as exc:
            logger.exception("%s on %s failed unexpectedly", self.operation.operation, address)
            try:
                self.update(address, f"failed: {exc}", state="failed", finished_at=utcnow(),
                            reason=f"unexpected error: {type(exc).__name__}")
            except (LostLock, errors.CommissaireError):
                pass
        finally:
            self._wake.set()

    def _act_on(self, address: str, op: ClusterOperation) -> None:
        detail = op.hosts[address]
        target = self._target(address)
        if detail.get("uid") not in (None, self._uids.get(address)):
            raise errors.StaleRecord(f"host {address} is not the record the operation "
                                     "started on")
        unfit = self._unfit(target)
        if unfit:  # before anything touches the host
            self.update(address, f"failed: {unfit}", state="failed", finished_at=utcnow(),
                        reason=unfit)
            return
        manager = self._manager()
        if detail["state"] == "pending":
            before = self._probe(target)
            if not before.ok:
                self.update(address, f"failed: {before.message}", state="failed",
                            finished_at=utcnow(),
                            reason=f"unreachable before the operation: {before.message}")
                return
            try:
                op = self.update(address, "started", state="in_process", started_at=utcnow(),
                                 boot_id_before=before.boot_id)
            except errors.OperationStopped:
                # Aborted (or stopped) just before this host began: the abort has
                # closed its entry as skipped; nothing touched the host.
                logger.info("%s of %s stopped before %s started", self.operation.operation,
                            self.name, address)
                return
            detail = op.hosts[address]
        else:
            # Resumed: the action may have run and the host may be restarting. Wait for
            # it; the action's on-host marker makes a second run a no-op.
            self.update(address, "resumed by another executor")
            problem = self._wait_reachable(target)
            if problem:
                self._fail(address, problem, manager)
                return
        boot_before = detail.get("boot_id_before", "")
        if manager and op.options.get("drain"):
            self.container.drain(manager, address, timeout=op.options.get("drain_timeout", 120))
            self.update(address, "drained")
        elif manager:
            self.container.cordon(manager, address)
        outcome = self._run_action(target, op)
        marker = ""
        if outcome.outcome == runner.UNREACHABLE:
            # The host answered the probe just before, so the connection most likely
            # dropped because the restart went through; the gate finds out which.
            marker = self.restart_marker(op)
            self.update(address, f"{self.operation.operation} may have been issued "
                                 f"(the connection dropped: {outcome.message})")
        elif outcome.outcome != runner.OK:
            self._fail(address, outcome.message, manager)
            return
        else:
            self.update(address, f"{self.operation.operation} issued")
        problem = self._gate(target, boot_before, op, manager, marker)
        if problem:
            self._fail(address, problem, manager)
            return
        if manager:
            self.container.uncordon(manager, address)
        self.update(address, "healthy", state="done", finished_at=utcnow())

    def _fail(self, address: str, reason: str, manager: str) -> None:
        if manager:
            try:
                self.container.uncordon(manager, address)
            except errors.CommissaireError:
                pass
        self.update(address, f"failed: {reason}", state="failed", finished_at=utcnow(),
                    reason=reason)

    def _manager(self) -> str:
        return str(self.storage.get(Cluster, self.name).container_manager or "")

    def _target(self, address: str) -> runner.Target:
        host = self.storage.get_host(address)
        self._uids[address] = host.uid
        creds = self.storage.reveal_creds(address, uid=host.uid)
        return runner.Target.of(host_target(host.to_dict(), creds.to_dict()),
                                {"commissaire_os": host.os or ""})

    def _unfit(self, target: runner.Target) -> str:
        """Why the operation must not act on this host at all ('' if it may)."""
        action = self.operation.operation
        if not target.host_key.strip():
            # Acting without a pinned key would trust whatever answers at the address.
            return (f"no SSH host key is pinned for {target.address}: refusing to {action} a "
                    "host that was never verified (investigate it first)")
        if target.hostvars.get("commissaire_os") not in runner.OS_PROFILES:
            return (f"the OS of {target.address} is not a known profile (it was never "
                    f"investigated, or its OS is unsupported): refusing to {action} it")
        return ""

    def _run_action(self, target: runner.Target, op: ClusterOperation) -> runner.HostResult:
        extravars = {"commissaire_operation_id": self.operation_id(op)}
        if self.operation.operation == "deploy":
            extravars["commissaire_deploy_version"] = (
                op.version if isinstance(op, ClusterDeploy) else "")
        return self._batcher.run(f"{self.operation.operation}.yml", target, extravars)

    def restart_marker(self, op: ClusterOperation) -> str:
        """The file restart.yml leaves on a host just before restarting it."""
        return f"/var/lib/commissaire/operations/{self.operation_id(op)}.restart"

    def _probe(self, target: runner.Target, command: str = BOOT_ID_COMMAND,
               timeout: float = 10) -> ProbeResult:
        return asyncio.run(probe(target.ssh(), timeout=timeout, command=command,
                                 kex_algorithms=self.settings.ssh.kex_algorithms,
                                 reach=self.settings.ssh.reach))

    def _wait_reachable(self, target: runner.Target) -> str:
        deadline = time.monotonic() + self.settings.gate_timeout
        result = self._probe(target)
        while not result.ok and time.monotonic() < deadline:
            if self.lost.is_set():
                raise LostLock()
            time.sleep(self.settings.poll)
            result = self._probe(target)
        return "" if result.ok else (f"did not come back within "
                                     f"{self.settings.gate_timeout:g} s: {result.message}")

    def _gate(self, target: runner.Target, boot_before: str, op: ClusterOperation,
              manager: str, marker: str = "") -> str:
        """'' once the host is healthy again, else why not (after the gate timeout).

        `marker`: the action's connection dropped; while the host still runs the old
        boot, its restart marker tells whether the restart was issued at all."""
        deadline = time.monotonic() + self.settings.gate_timeout
        last = "it did not come back"
        while time.monotonic() < deadline:
            if self.lost.is_set():
                raise LostLock()
            # A short timeout: a probe stuck on a host still down must not delay
            # noticing that it came back.
            result = self._probe(target, timeout=GATE_PROBE_TIMEOUT)
            if not result.ok:
                last = result.message
            elif boot_before and result.boot_id == boot_before:
                if marker:  # asked once: a marker found stays there
                    found = self._probe(target, f"test -e {marker} && echo issued || echo missing",
                                        timeout=GATE_PROBE_TIMEOUT)
                    if found.output == "missing":
                        return (f"the {self.operation.operation} was not issued: the "
                                "connection dropped before the restart command ran")
                    marker = "" if found.ok else marker
                last = "it has not restarted yet (same boot id)"
            else:
                if self.operation.operation == "deploy":
                    version = self._probe(target, VERSION_COMMAND)
                    wanted = op.version if isinstance(op, ClusterDeploy) else None
                    if version.ok and version.output != wanted:
                        return (f"booted version {runner.one_line(version.output, 64)!r}, "
                                f"not the requested {wanted!r}")
                if not manager or self.container.node_ready(manager, target.address):
                    return ""
                last = "its node is not Ready in the container manager"
            time.sleep(self.settings.poll)
        return f"health gate timed out after {self.settings.gate_timeout:g} s: {last}"

