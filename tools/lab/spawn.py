"""Start a lab's long-lived processes so that they cannot outlive it.

Each is started under ``setpriv --pdeathsig KILL``: when the Python process
dies, even by SIGKILL, the kernel kills them, and the mount namespaces (hence
the overlay mounts) that only they kept alive vanish with them.

The kernel sends the parent-death signal when the *thread* that forked the
child exits, not the process. So every such child is forked by one dedicated
thread that lives exactly as long as the Lab, never by a short-lived worker.
"""
from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from concurrent.futures import Future


class Spawner:
    def __init__(self, name: str = "lab-spawner") -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", *args], **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen:
        """subprocess.Popen(args, **kwargs), forked by the spawner thread."""
        if not self._thread.is_alive():
            raise RuntimeError("lab is closed")
        future: Future = Future()
        self._jobs.put((future, list(args), kwargs))
        return future.result()

    def close(self) -> None:
        """Only once every child is gone: the thread's exit kills the rest."""
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def read_ready(proc: subprocess.Popen) -> bool:
    """True once proc printed "ready" as its first line; stdout is closed after."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    return line.strip() == b"ready"


def close_stdin(proc: subprocess.Popen) -> None:
    """Our children exit when their stdin closes."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
