"""Lab: a set of lab hosts sharing one SSH keypair, one work dir, one supervisor."""
from __future__ import annotations

import atexit
import base64
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tools.lab import addresses
from tools.lab.base import ensure_base
from tools.lab.host import LabError, LabHost
from tools.lab.spawn import Spawner, close_stdin, read_ready

WORKDIR_PREFIX = "commissaire-lab-"
OWNER_FILE = "owner.pid"
FORWARDER = Path(__file__).with_name("forward.py")
TICK = 0.05  # the supervisor notices a reboot request, and powers hosts on, within this


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _sweep_stale_workdirs() -> None:
    """Remove temp work dirs of labs whose process died without closing them.
    (Their processes and mounts died with them: see tools/lab/spawn.py.)"""
    for path in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            pid = int((path / OWNER_FILE).read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            continue


class Lab:
    """N sshd hosts on this machine's loopback; see the tools.lab docstring."""

    def __init__(self, workdir: str | os.PathLike | None = None, reboot_time: float = 2.0) -> None:
        if os.geteuid() != 0:
            raise LabError("a lab needs root (namespaces, mounts, chroot)")
        self.reboot_time = reboot_time
        self.base = ensure_base(log=_log)  # the lab profile's; see base_for()
        self._bases = {"lab": self.base}
        addresses.sweep_stale()
        if workdir is None:
            _sweep_stale_workdirs()
            self.workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
            self._own_workdir = True
        else:
            self.workdir = os.path.abspath(workdir)
            self._own_workdir = not os.path.exists(self.workdir)
            os.makedirs(self.workdir, exist_ok=True)
        Path(self.workdir, OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.hosts: list[LabHost] = []
        self._claims: list[tuple[str, int]] = []
        self._forwarders: list[subprocess.Popen] = []
        self._closed = False
        self._lock = threading.Lock()
        key = os.path.join(self.workdir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "commissaire-lab", "-f", key],
                       check=True, capture_output=True)
        os.chmod(key, 0o600)
        self.private_key_path = key
        self.public_key = Path(key + ".pub").read_text().strip()
        self._spawner = Spawner()
        self._stop_supervisor = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="lab-supervisor", daemon=True)
        self._supervisor.start()
        atexit.register(self.close)

    # -- keys ------------------------------------------------------------------

    @property
    def private_key_b64(self) -> str:
        """Base64 of the OpenSSH private key file (the REST API's ssh_priv_key)."""
        return base64.b64encode(Path(self.private_key_path).read_bytes()).decode()

    # -- hosts -----------------------------------------------------------------

    def base_for(self, profile: str) -> Path:
        """The cached base of an OS profile ("lab" or "debian"), built once."""
        with self._lock:
            if profile not in self._bases:
                self._bases[profile] = ensure_base(log=_log, profile=profile)
            return self._bases[profile]

    def start_hosts(self, count: int, first: str | None = None, port: int = 22,
                    profile: str = "lab") -> list[LabHost]:
        """Create and boot `count` hosts in parallel; return once every sshd listens.

        first=None takes the first free addresses from 127.0.100.1 up (other labs
        may be running); an explicit first takes exactly first, first+1, ... and
        raises AddressInUse if one is taken. Addresses outside 127.0.0.0/8, or
        127.0.0.1, raise ValueError. profile: "lab" (stand-ins for everything,
        facts say os=lab) or "debian" (a plain Debian 12 with its real apt-get;
        see tools/lab/base.py)."""
        base = self.base_for(profile)
        if first is None:
            chosen = addresses.claim_free(count, port)
        else:
            start = ipaddress.IPv4Address(addresses.check(first))
            chosen = addresses.claim([str(start + i) for i in range(count)], port)
        with self._lock:
            self._check_open()
            self._claims += [(a, port) for a in chosen]
            new = [LabHost(self, address, port, base=base, profile=profile) for address in chosen]
            self.hosts += new
        with ThreadPoolExecutor(max_workers=min(32, max(1, count))) as pool:
            # creation is mostly waiting on small processes: overlap it
            list(pool.map(lambda h: (h._create(), h.start(wait=False)), new))
        for host in new:
            host.start()  # each waits for its sshd; by now most already listen
        return new

    def add_addresses(self, host: LabHost, extra: list[str] | int) -> list[str]:
        """Make `host` reachable on more loopback addresses (same port), e.g. 1,000
        addresses served by 10 sshd. sshd itself listens on at most 16 addresses,
        so a forwarder process relays them to the host's own address; connecting
        to one while the host is down gets a reset. `extra`: addresses, or how
        many free ones to take. Returns the addresses."""
        if isinstance(extra, int):
            chosen = addresses.claim_free(extra, host.port)
        else:
            chosen = addresses.claim(extra, host.port)
        with self._lock:
            self._check_open()
            self._claims += [(a, host.port) for a in chosen]
        with open(host.dir / "forward.log", "ab") as log:
            proc = self._spawner.popen(
                [sys.executable, str(FORWARDER), host.address, str(host.port), *chosen],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, close_fds=True)
        self._forwarders.append(proc)
        if not read_ready(proc):
            proc.wait()
            raise LabError(f"forwarder for {host.address} failed: see {host.dir / 'forward.log'}")
        host.extra_addresses += chosen
        return chosen

    # -- supervisor ------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop_supervisor.wait(TICK):
            now = time.monotonic()
            for host in list(self.hosts):
                try:
                    host._tick(now)
                except Exception as exc:  # keep supervising the others
                    print(f"lab supervisor: {host.address}: {exc}", file=sys.stderr)

    # -- teardown --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LabError("lab is closed")

    def close(self) -> None:
        """Stop every host and forwarder, unmount, remove the work dir. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._stop_supervisor.set()
        if threading.current_thread() is not self._supervisor:
            self._supervisor.join(timeout=5)
        for proc in self._forwarders:
            close_stdin(proc)
            proc.kill()
            proc.wait()
        # signal all, then wait for all: no thread pool, as this may run at exit
        for host in self.hosts:
            host._kill()
        for host in self.hosts:
            host._reap()
        self._spawner.close()
        by_port: dict[int, list[str]] = {}
        for address, port in self._claims:
            by_port.setdefault(port, []).append(address)
        for port, chosen in by_port.items():
            addresses.release(chosen, port)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for name in ("hosts", "id_ed25519", "id_ed25519.pub", OWNER_FILE):
                path = Path(self.workdir, name)
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ssh_command(self, host: LabHost, command: str | None = None, address: str | None = None) -> list[str]:
        """argv of an OpenSSH client call to `host` with the lab key (no host key check)."""
        argv = ["ssh", "-i", self.private_key_path, "-F", "/dev/null", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-p", str(host.port),
                f"root@{address or host.address}"]
        return argv + ([command] if command is not None else [])

    def ssh(self, host: LabHost, command: str, timeout: float = 30, address: str | None = None
            ) -> subprocess.CompletedProcess:
        """Run `command` on `host` over SSH (text output)."""
        return subprocess.run(self.ssh_command(host, command, address), capture_output=True, text=True,
                              timeout=timeout)
