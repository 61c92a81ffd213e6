"""The watcher: keeps every bootstrapped host's `status` and `last_check` true.

Each copy lists the hosts once at start, then learns of new, changed and deleted
hosts from storage notifications on a queue of its own (every copy must see every
change); it never polls the store. Copies find each other by heartbeats on the
bus and split the hosts by a stable hash of the address, so N watchers share the
work and a dead one's hosts are taken over within a few heartbeats. A check is a
light SSH probe (asyncssh: connect, authenticate against the pinned host key,
read the boot id), not an Ansible run. Results go to storage in one call per
cycle; only status changes are announced. Each check names the incarnation
(`uid`) of the record it was made for: a host deleted and created again while
it was being checked never gets the old one's result (storage refuses it).
Decrypted keys are kept CREDS_TTL seconds at most.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol, TypedDict

from commissaire import errors
from commissaire.bus.clients import Caller, HostCheck, StorageClient
from commissaire.models import Cluster, utcnow
from commissaire.reach import ANYWHERE, Reach
from commissaire.secrets import ExpiringCache
from commissaire.ssh import AUTH_FAILED, ProbeResult, ProbeTarget, host_target, probe_many
from commissaire_service.service import Service, on_notification

logger = logging.getLogger(__name__)

WATCHED = ("active", "disassociated", "failed")
CREDS_TTL = 120.0  # seconds a host's decrypted key stays in memory between checks


class Bus(Caller, Protocol):
    def notify(self, routing_key: str, params: Mapping[str, object]) -> None: ...


class CycleSummary(TypedDict):
    """What one check cycle did (health's `last_cycle`)."""

    checked: int
    failed: int
    seconds: float
    cpu_seconds: float
    at: str


def _slot(address: str, peers: int) -> int:
    digest = hashlib.sha256(address.encode()).digest()
    return int.from_bytes(digest[:8], "big") % peers


class WatcherService(Service):
    name = "watcher"

    def __init__(self, bus: Bus, interval: float = 30.0, timeout: float | None = None,
                 concurrency: int = 100, start: bool = True, kex_algorithms: str = "",
                 reach: Reach = ANYWHERE) -> None:
        """`reach`: the networks this watcher may probe (its ssh-allowed-networks)."""
        super().__init__()
        self.bus = bus
        self.storage = StorageClient(bus)
        self.reach = reach
        self.kex_algorithms = kex_algorithms
        self.interval = interval
        self.timeout = timeout if timeout is not None else max(1.0, min(10.0, interval * 0.6))
        self.concurrency = concurrency
        self.hosts: dict[str, dict[str, Any]] = {}
        # (address, uid) -> (private key, user): bounded in time, per incarnation.
        self._creds: ExpiringCache[tuple[str, str], tuple[str, str]] = ExpiringCache(
            CREDS_TTL, maxsize=100_000)
        self._peers: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._loaded = threading.Event()
        self.cycles = 0
        self.last_cycle: Mapping[str, object] = {}  # a CycleSummary after the first
        if start:
            threading.Thread(target=self._loop, name="watcher", daemon=True).start()

    def health(self) -> dict[str, object]:
        with self._lock:
            return {"hosts_known": len(self.hosts), "peers": len(self._live_peers()),
                    "interval": self.interval, "last_cycle": self.last_cycle}

    def stop(self) -> None:
        self._stopping.set()

    # -- what the watcher knows -------------------------------------------

    def load(self) -> None:
        """Every host once, at start; afterwards notifications keep this true."""
        page = self.storage.list_hosts()
        with self._lock:
            for host in page.items:
                # Kept as notifications bring them: the records' client form.
                self.hosts[host.address] = host.to_safe_dict()
        self._loaded.set()

    @on_notification("notify.storage.Host.created", "notify.storage.Host.updated", private=True)
    def on_host_changed(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.hosts[record["address"]] = record

    @on_notification("notify.storage.Host.deleted", private=True)
    def on_host_deleted(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.hosts.pop(record["address"], None)
            self._creds.pop((record["address"], record.get("uid", "")))

    @on_notification("notify.watcher.heartbeat", private=True)
    def on_heartbeat(self, instance: str, at: float) -> None:  # noqa: ARG002  (a peer's clock: our own decides)
        with self._lock:
            self._peers[instance] = time.monotonic()

    def _live_peers(self) -> list[str]:
        horizon = time.monotonic() - 3 * self._heartbeat_every()
        live = {i for i, seen in self._peers.items() if seen >= horizon}
        live.add(self.instance)
        return sorted(live)

    def _heartbeat_every(self) -> float:
        return max(0.5, min(5.0, self.interval / 2))

    def mine(self, address: str, peers: list[str]) -> bool:
        return peers[_slot(address, len(peers))] == self.instance

    # -- checking -----------------------------------------------------------

    def due(self) -> list[dict[str, Any]]:
        with self._lock:
            peers = self._live_peers()
            return [dict(h) for a, h in self.hosts.items()
                    if h.get("bootstrapped") and h.get("status") in WATCHED
                    and self.mine(a, peers)]

    def run_cycle(self) -> CycleSummary:
        started = time.monotonic()
        cpu_started = time.process_time()
        hosts = self.due()
        refused: dict[str, ProbeResult] = {}  # hosts whose credentials cannot be used
        targets = [t for t in (self._target(h, refused) for h in hosts) if t is not None]
        results = asyncio.run(probe_many(targets, self.concurrency, self.timeout,
                                         self.kex_algorithms, reach=self.reach)) \
            if targets else {}
        results = {**results, **refused}
        checks = [self._check(h, results[h["address"]]) for h in hosts
                  if h["address"] in results]
        if checks:
            self.storage.record_checks(checks)
        self.cycles += 1
        summary: CycleSummary = {"checked": len(checks),
                                 "failed": sum(1 for r in results.values() if not r.ok),
                                 "seconds": round(time.monotonic() - started, 3),
                                 "cpu_seconds": round(time.process_time() - cpu_started, 3),
                                 "at": utcnow()}
        with self._lock:
            self.last_cycle = summary
        return summary

    def _target(self, host: dict[str, Any],
                refused: dict[str, ProbeResult] | None = None) -> ProbeTarget | None:
        address, uid = host["address"], host.get("uid", "")

        def fetch() -> tuple[str, str]:
            creds = self.storage.reveal_creds(address, uid=uid)
            access = host_target(host, creds.to_dict())
            return access.private_key, access.user

        try:
            key, user = self._creds.get((address, uid), fetch)
        except (errors.NotFound, errors.StaleRecord):
            return None  # deleted (or created again: its notification brings the new one)
        except errors.SecretsUnavailable as exc:
            if refused is not None:
                refused[address] = ProbeResult(AUTH_FAILED, exc.description)
            return None
        return ProbeTarget(address=address, private_key=key, user=user,
                           port=int(host.get("ssh_port") or 22),
                           host_key=host.get("ssh_host_key") or "")

    def _check(self, host: dict[str, Any], result: ProbeResult) -> HostCheck:
        changes: dict[str, object] = {"last_check": utcnow()}
        if result.ok and host["status"] == "failed":
            changes.update(status=self._healthy_status(host), status_reason="")
        elif not result.ok and (host["status"] != "failed"
                                or host.get("status_reason") != result.message):
            changes.update(status="failed", status_reason=result.message)
        return {"address": host["address"], "uid": host.get("uid", ""), "changes": changes}

    def _healthy_status(self, host: dict[str, Any]) -> str:
        """Back to what bootstrap made it: active with a container manager, else
        disassociated."""
        if not host.get("cluster"):
            return "disassociated"
        try:
            cluster = self.storage.get(Cluster, host["cluster"])
        except errors.NotFound:
            return "disassociated"
        return "active" if cluster.container_manager else "disassociated"

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.load()
                break
            except errors.CommissaireError as exc:
                logger.warning("cannot list hosts yet (%s); retrying", exc.description)
                self._stopping.wait(2.0)
        next_cycle = time.monotonic()
        next_beat = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_beat:
                try:
                    self.bus.notify("notify.watcher.heartbeat",
                                    {"instance": self.instance, "at": time.time()})
                except errors.CommissaireError as exc:
                    logger.warning("heartbeat not sent: %s", exc.description)
                next_beat = now + self._heartbeat_every()
            if now >= next_cycle:
                try:
                    summary = self.run_cycle()
                    if summary["checked"]:
                        logger.info("checked %(checked)d host(s), %(failed)d failed, in "
                                    "%(seconds)ss", summary)
                except Exception:
                    logger.exception("watcher cycle failed")
                next_cycle = now + self.interval
            self._stopping.wait(max(0.05, min(next_cycle, next_beat) - time.monotonic()))
