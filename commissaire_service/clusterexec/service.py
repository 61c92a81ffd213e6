"""The clusterexec service: runs rolling operations, exactly one copy per operation.

A new operation is announced by storage (`notify.storage.Cluster<Op>.created`, on
the queue all copies share); the copy that takes the operation's lock (a store
lease it keeps alive) runs it. Every copy also looks, every few seconds, for
operations in process whose lock is free — their executor died — and takes them
over; the executor resumes from the stored per-host state.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from commissaire import errors
from commissaire.ansible import runner
from commissaire.bus.clients import Caller, StorageClient
from commissaire.models import OPERATIONS
from commissaire_service.clusterexec.executor import Executor, LostLock, Settings
from commissaire_service.service import Service, on_notification

logger = logging.getLogger(__name__)

KINDS = [cls.kind for cls in OPERATIONS.values()]


class ClusterExecService(Service):
    name = "clusterexec"

    def __init__(self, bus: Caller, lease_ttl: int = 10, settings: Settings | None = None,
                 start: bool = True) -> None:
        super().__init__()
        self.bus = bus
        self.storage = StorageClient(bus)
        self.lease_ttl = lease_ttl
        self.settings = settings or Settings()
        self._running: dict[tuple[str, str], threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        runner.remove_stale_run_dirs()  # what a killed predecessor left (private keys)
        if start:
            threading.Thread(target=self._scan_loop, name="clusterexec-scan", daemon=True).start()

    def health(self) -> dict[str, object]:
        return {"running": self.running()}

    def running(self) -> list[str]:
        """The operations this copy runs now (reported by ping)."""
        with self._lock:
            return [f"{k}/{n}" for (k, n), t in self._running.items() if t.is_alive()]

    def stop(self) -> None:
        self._stopping.set()

    @on_notification(*(f"notify.storage.{kind}.created" for kind in KINDS), pass_key=True)
    def _on_created(self, key: str, record: dict[str, Any]) -> None:
        kind = key.split(".")[2]
        self.try_run(kind, record["name"])

    def scan(self) -> None:
        """Take over operations in process that nobody runs."""
        for op in self.storage.list_operations("in_process"):
            self.try_run(op.kind, op.name)

    def try_run(self, kind: str, name: str) -> bool:
        key = (kind, name)
        with self._lock:
            if key in self._running and self._running[key].is_alive():
                return False
        got = self.storage.acquire_lock(f"{kind}.{name}", self.instance, self.lease_ttl)
        if not got["acquired"]:
            return False
        thread = threading.Thread(target=self._run, args=(kind, name, got["lease"]),
                                  name=f"op-{kind}-{name}", daemon=True)
        with self._lock:
            self._running[key] = thread
        thread.start()
        return True

    def _run(self, kind: str, name: str, lease: int) -> None:
        lost = threading.Event()
        keeper = threading.Thread(target=self._keep_alive, args=(kind, name, lease, lost),
                                  daemon=True)
        keeper.start()
        try:
            logger.info("running %s of %s", kind, name)
            final = Executor(self.bus, kind, name, lease, self.settings, lost).run()
            logger.info("%s of %s ended: %s", kind, name, final.status)
        except LostLock:
            logger.warning("%s of %s: lock lost; another copy takes over", kind, name)
        except Exception:
            logger.exception("%s of %s failed unexpectedly; it will be resumed", kind, name)
        finally:
            lost.set()
            try:
                self.storage.release_lock(f"{kind}.{name}", lease)
            except errors.CommissaireError:
                pass

    def _keep_alive(self, kind: str, name: str, lease: int, lost: threading.Event) -> None:
        while not lost.wait(self.lease_ttl / 3):
            try:
                self.storage.keepalive_lock(f"{kind}.{name}", lease)
            except errors.NotFound:
                lost.set()
            except errors.CommissaireError as exc:
                logger.warning("keepalive of %s/%s failed: %s", kind, name, exc.description)

    def _scan_loop(self) -> None:
        while not self._stopping.wait(max(1.0, self.lease_ttl / 2)):
            try:
                self.scan()
            except errors.CommissaireError as exc:
                logger.warning("scan for orphaned operations failed: %s", exc.description)
