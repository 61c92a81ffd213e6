"""One lab host: an overlay of the base, a chroot, a pid namespace, one sshd.

Processes of a host (all killed by the kernel if the owning Python dies):

* the *holder*: ``unshare --mount`` + a shell that mounts the host's overlay
  (lower = the cached base, upper/work = this host's directory) in its private
  mount namespace and then waits on its stdin. It lives as long as the host
  exists, so the filesystem stays readable (``read_file``) while the host is
  stopped. The overlay is never visible in the machine's mount namespace.
* one *boot* at a time: from the holder's namespace, ``unshare --mount --pid
  --uts --ipc --fork`` mounts a fresh /proc, /sys (ro), a minimal /dev, and
  tmpfs /run, /tmp, then chroots into the overlay and runs the base's init,
  which writes a new /var/lib/lab/boot_id and execs ``sshd -D``: sshd is PID 1
  of the boot. Stopping the host kills that PID 1 (SIGKILL from outside: PID 1
  of a pid namespace ignores other signals), which kills every process of the
  boot, like a power cut; its /run and /tmp go with its mount namespace.

What a playbook writes lands in the overlay's upper directory under the lab
work dir, or in a boot's tmpfs; /proc/sys is read-only and
/proc/sysrq-trigger is /dev/null. The network namespace is the machine's
(sshd must be reachable on 127.x), so commands that change the network would
still change the machine's.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tools.lab.addresses import listening
from tools.lab.base import INIT_PATH
from tools.lab.spawn import close_stdin, read_ready

if TYPE_CHECKING:
    from tools.lab.lab import Lab

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "USER": "root", "LOGNAME": "root"}
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
LAB_DIR = "/var/lib/lab"
READY_TIMEOUT = 30.0

HOLDER_SCRIPT = """\
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" || exit 1
echo ready
read ignored
"""

BOOT_SCRIPT = """\
set -e
M=$1
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
# a lab host must not change the machine's kernel settings
# a new boot id per boot, shown at the kernel's own path as on a real host
mkdir -p "$M/var/lib/lab"
cat /proc/sys/kernel/random/uuid > "$M/var/lib/lab/boot_id.tmp"
mv -f "$M/var/lib/lab/boot_id.tmp" "$M/var/lib/lab/boot_id"
mount --bind "$M/proc/sys" "$M/proc/sys"
mount -o remount,bind,ro "$M/proc/sys"
# after the /proc/sys bind, which would hide it (a plain bind is not recursive)
mount --bind "$M/var/lib/lab/boot_id" "$M/proc/sys/kernel/random/boot_id"
[ ! -e "$M/proc/sysrq-trigger" ] || mount --bind /dev/null "$M/proc/sysrq-trigger"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
mount -t tmpfs -o mode=755,nosuid tmpfs "$M/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/tmp"
# a minimal /dev: the machine's disks are not in it
mount -t tmpfs -o mode=755,nosuid,size=1m tmpfs "$M/dev"
cd "$M/dev"
mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7
mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0
mkdir pts shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs shm
ln -s pts/ptmx ptmx; ln -s /proc/self/fd fd
ln -s /proc/self/fd/0 stdin; ln -s /proc/self/fd/1 stdout; ln -s /proc/self/fd/2 stderr
cd /
hostname "$2"
exec chroot "$M" "$3"
"""


class LabError(RuntimeError):
    pass


def fingerprint(public_key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of an authorized_keys-style public key line."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class LabHost:
    """A lab host. Create them with Lab.start_hosts(), not directly."""

    def __init__(self, lab: Lab, address: str, port: int, base: Path | None = None,
                 profile: str = "lab") -> None:
        self.lab = lab
        self.base = Path(lab.base if base is None else base)  # lower layer of its overlay
        self.profile = profile
        self.address = address
        self.port = port
        self.hostname = "lab-" + address.replace(".", "-")
        self.extra_addresses: list[str] = []
        self.dir = Path(lab.workdir) / "hosts" / f"{address}-{port}"
        self.log_path = self.dir / "boot.log"
        self._upper, self._work, self._merged = (self.dir / n for n in ("upper", "work", "merged"))
        self._holder: subprocess.Popen | None = None
        self._boot: subprocess.Popen | None = None
        self._pid1: int | None = None
        self._boot_at: float | None = None  # a reboot's scheduled power-on (monotonic)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<LabHost {self.address}:{self.port} {self.profile} {'up' if self.is_up() else 'down'}>"

    # -- creation / destruction (called by Lab) --------------------------------

    def _create(self) -> None:
        for d in (self._upper, self._work, self._merged):
            d.mkdir(parents=True)
        if any(c in str(self.dir) + str(self.base) for c in ",:"):
            raise LabError(f"overlayfs cannot take ',' or ':' in paths: {self.dir}")
        with open(self.log_path, "ab") as log:
            self._holder = self.lab._spawner.popen(
                ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", HOLDER_SCRIPT,
                 "lab-holder", str(self.base), str(self._upper), str(self._work), str(self._merged)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=ENV, close_fds=True)
        if not read_ready(self._holder):
            self._holder.wait()
            raise LabError(f"{self.address}: cannot mount its overlay: {self._log_tail()}")
        self._generate_host_key()
        self.write_file("/root/.ssh/authorized_keys", self.lab.public_key + "\n", 0o600)
        os.chmod(self._path("/root/.ssh"), 0o700)
        self.write_file("/etc/ssh/sshd_config.d/lab.conf",
                        f"# this lab host's own address only\nListenAddress {self.address}:{self.port}\n")
        self.write_file("/etc/hostname", self.hostname + "\n")
        self.write_file("/etc/hosts", f"127.0.0.1 localhost\n{self.address} {self.hostname}\n")
        self.write_file("/etc/machine-id", os.urandom(16).hex() + "\n", 0o444)

    def _kill(self) -> None:
        """First half of destroying the host: signal everything, wait for nothing."""
        with self._lock:
            self._boot_at = None
            if self._pid1 is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid1, signal.SIGKILL)
            if self._holder is not None:
                close_stdin(self._holder)  # its `read` returns: namespace and overlay go

    def _reap(self) -> None:
        """Second half: wait until every process of the host is gone."""
        self.stop()
        if self._holder is not None:
            try:
                self._holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()
            self._holder = None

    # -- power -----------------------------------------------------------------

    def start(self, wait: bool = True) -> None:
        """Boot the host (a new boot id); with wait, return once sshd listens."""
        with self._lock:
            self._boot_at = None
            if not self._booted():
                self._spawn_boot()
            if wait:
                self._wait_listening()

    def stop(self) -> None:
        """Power off: sshd and every process of the boot are killed at once."""
        with self._lock:
            self._boot_at = None
            boot, self._boot = self._boot, None
            if boot is None:
                return
            if self._pid1 is None:
                boot.kill()  # PID 1 not found: unshare --kill-child takes it along
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid1, signal.SIGKILL)
            try:
                boot.wait(timeout=10)
            except subprocess.TimeoutExpired:
                boot.kill()  # unshare --kill-child takes PID 1 with it
                boot.wait()
            self._pid1 = None

    def reboot(self, delay: float | None = None, wait: bool = True,
               since: float | None = None) -> None:
        """Go down now and come back `delay` s later (default: the lab's reboot_time)
        with a new boot id. With wait=False, return at once; the lab's supervisor
        powers the host on when the delay has passed, counted from `since` (a
        monotonic time: when the reboot was asked for) if given, else from now."""
        delay = self.lab.reboot_time if delay is None else delay
        with self._lock:
            self.stop()
            if not wait:
                self._boot_at = (time.monotonic() if since is None else since) + delay
                return
        time.sleep(delay)
        self.start()

    def is_up(self) -> bool:
        """True when the host is booted and its sshd listens."""
        return self._booted() and (self.address, self.port) in listening()

    def sshd_pid(self) -> int | None:
        """Outside pid of the host's sshd (its boot's PID 1), None while down."""
        return self._pid1 if self._booted() else None

    def change_host_key(self) -> None:
        """New host keys; a running sshd is restarted (SIGHUP: same boot, same boot id)."""
        with self._lock:
            self._generate_host_key()
            if self._booted() and self._pid1 is not None:
                old = listening().get((self.address, self.port), 0)
                os.kill(self._pid1, signal.SIGHUP)  # sshd re-execs itself and rereads its keys
                self._wait_listening(not_inode=old)

    # -- inside the host -------------------------------------------------------

    @property
    def root(self) -> str:
        """The host's / as seen from outside, through /proc: while the host is up,
        its boot's view (with its /tmp and /run), else the bare overlay. Valid
        until the lab closes. Absolute symlinks inside it point outside: use
        read_file()/file_exists(), which resolve them inside the host."""
        pid1 = self._pid1
        if pid1 is not None and self._booted():
            return f"/proc/{pid1}/root"
        return f"/proc/{self._holder_pid()}/root{self._merged}"

    def _path(self, inside: str, root: str | None = None) -> str:
        """Outside path of `inside`, following symlinks as the host would."""
        root = self.root if root is None else root
        todo = [p for p in inside.split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = root + "/" + "/".join([*done, part])
            if os.path.islink(candidate):
                hops += 1
                if hops > 40:
                    raise OSError(f"too many symlinks in {inside}")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
            else:
                done.append(part)
        return root + "/" + "/".join(done)

    def _inside(self, fn, path: str):
        """fn(outside path); again if the host went up or down meanwhile (the view changed)."""
        while True:
            root = self.root
            try:
                result = fn(self._path(path, root))
            except FileNotFoundError:
                if self.root == root:
                    raise
                continue
            if result is False and self.root != root:
                continue
            return result

    def read_file(self, path: str) -> str:
        """Contents of a file inside the host (works while it is stopped too)."""
        def read(outside: str) -> str:
            with open(outside) as f:
                return f.read()
        return self._inside(read, path)

    def file_exists(self, path: str) -> bool:
        return self._inside(os.path.exists, path)

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside the host (through its overlay), creating parents."""
        outside = self._path(path)
        os.makedirs(os.path.dirname(outside), exist_ok=True)
        with open(outside, "w") as f:
            f.write(text)
        os.chmod(outside, mode)

    def boot_id(self) -> str:
        """The current (or last, if stopped) boot id, from /var/lib/lab/boot_id."""
        return self.read_file(LAB_DIR + "/boot_id").strip()

    def requests(self) -> list[dict]:
        """Every stand-in call recorded in /var/lib/lab/requests.jsonl, oldest first."""
        try:
            text = self.read_file(LAB_DIR + "/requests.jsonl")
        except FileNotFoundError:
            return []
        # a line without its newline is still being written
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    def units(self) -> dict[str, dict]:
        """The debian profile's unit state (/var/lib/lab/units.json, kept by the
        systemctl stand-in): unit id -> {"active", "since", "starts",
        "restarts", "reloads", "loaded", "running"}, the last two {path: sha256}
        of the unit file and drop-ins systemd would have loaded, and the ones
        the running service was (re)started with. {} before any systemctl call."""
        try:
            return dict(json.loads(self.read_file(LAB_DIR + "/units.json"))["units"])
        except FileNotFoundError:
            return {}

    def unit_state(self, unit: str) -> dict[str, str]:
        """`systemctl show <unit>` of the host's stand-in, as a dict (LoadState,
        ActiveState, SubState, UnitFileState, FragmentPath, DropInPaths,
        NeedDaemonReload, ...). Not recorded in requests.jsonl. The host must be up."""
        done = self.run(["env", "COMMISSAIRE_LAB_UNRECORDED=1", "systemctl", "show", unit])
        if done.returncode != 0:
            raise LabError(f"{self.address}: systemctl show {unit}: {done.stderr.strip()}")
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    def host_key_fingerprint(self) -> str:
        """"SHA256:..." of the host's ed25519 host key."""
        return fingerprint(self.read_file(HOST_KEY + ".pub"))

    def host_public_key(self) -> str:
        """The "ssh-ed25519 AAAA..." host key line (for a known_hosts file)."""
        return " ".join(self.read_file(HOST_KEY + ".pub").split()[:2])

    def run(self, cmd: str | list[str], timeout: float | None = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the host (not over SSH), as root, output as text.

        While the host is up it runs in the boot's namespaces and chroot (its
        /proc, /tmp, processes); while stopped, in a bare chroot of the
        overlay with no /proc, /dev or /tmp mounted."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        pid1 = self._pid1
        if pid1 is not None and self._booted():
            enter = ["nsenter", "-t", str(pid1), "-m", "-p", "-u", "-i", "-r", "-w", "--"]
        elif self._holder is not None:
            enter = ["nsenter", "-t", str(self._holder.pid), "-m", "--", "chroot", str(self._merged)]
        else:
            raise LabError(f"{self.address}: the lab is closed")
        return subprocess.run([*enter, *argv], capture_output=True, text=True, env=ENV,
                              timeout=timeout, input=input, cwd="/")

    # -- internals -------------------------------------------------------------

    def _holder_pid(self) -> int:
        if self._holder is None:
            raise LabError(f"{self.address}: the lab is closed")
        return self._holder.pid

    def _booted(self) -> bool:
        return self._boot is not None and self._boot.poll() is None

    def _spawn_boot(self) -> None:
        with open(self.log_path, "ab") as log:
            self._boot = self.lab._spawner.popen(
                ["nsenter", "-t", str(self._holder_pid()), "-m", "--",
                 "unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child",
                 "--propagation", "private", "--",
                 "/bin/sh", "-c", BOOT_SCRIPT, "lab-boot", str(self._merged), self.hostname, INIT_PATH],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=ENV, close_fds=True)
        self._pid1 = self._find_pid1(self._boot)

    @staticmethod
    def _find_pid1(boot: subprocess.Popen) -> int | None:
        """Outside pid of the boot's PID 1: the child `unshare --fork` makes."""
        children = Path(f"/proc/{boot.pid}/task/{boot.pid}/children")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and boot.poll() is None:
            try:
                pids = children.read_text().split()
            except OSError:
                pids = []
            if pids:
                return int(pids[0])
            time.sleep(0.002)
        return None

    def _wait_listening(self, not_inode: int = 0, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            inode = listening().get((self.address, self.port))
            if inode and inode != not_inode and self._booted():
                return
            if not self._booted():
                raise LabError(f"{self.address}: boot failed: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise LabError(f"{self.address}: sshd not listening after {timeout} s: {self._log_tail()}")
            time.sleep(0.01)

    def _tick(self, now: float) -> None:
        """Supervisor step: power on after a reboot's delay, act on a reboot request."""
        if not self._lock.acquire(blocking=False):
            return  # someone is changing this host's power right now
        try:
            if self._boot_at is not None:
                if now >= self._boot_at:
                    self.start(wait=False)
            elif self._booted():
                request = self._path(LAB_DIR + "/reboot-requested")
                if os.path.exists(request):
                    # Consumed here, not by the next boot's init: under load the
                    # supervisor would see it again before init ran and reboot twice.
                    asked = _requested_at(request, now)
                    os.unlink(request)
                    # The reboot time counts from the command, as on a real machine,
                    # not from when this tick noticed it.
                    self.reboot(wait=False, since=asked)
        finally:
            self._lock.release()

    def _generate_host_key(self) -> None:
        # ssh-keygen of the machine, outside the host: works whether it is up or not
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            key = os.path.join(tmp, "key")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.hostname}",
                            "-f", key], check=True, capture_output=True)
            for suffix, mode in (("", 0o600), (".pub", 0o644)):
                with open(key + suffix) as f:
                    self.write_file(HOST_KEY + suffix, f.read(), mode)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def _requested_at(request: str, now: float) -> float:
    """When the stand-in wrote the reboot request (its wall time in the file), as
    a monotonic time no later than `now`; `now` if the file does not say."""
    try:
        with open(request) as f:
            wall = float(f.read().strip())
    except (OSError, ValueError):
        return now
    return min(now, now - (time.time() - wall))
