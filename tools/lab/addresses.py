"""Loopback addresses for lab hosts: which are allowed, which are free, which listen.

Linux routes all of 127.0.0.0/8 to ``lo`` and lets any of it be bound, so a
lab host needs no address added to an interface: it just binds its own one.
127.0.0.1 is the machine's own (its etcd, redis, ...) and is never used.

Several processes may run labs at once (parallel test sessions), so an address
is *claimed* first: a file ``<claims>/<address>:<port>`` holding the owner's
pid, created under a lock; a claim whose owner died is taken over.
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
MACHINE = ipaddress.IPv4Address("127.0.0.1")
DEFAULT_FIRST = "127.0.100.1"
CLAIMS = Path(os.environ.get("COMMISSAIRE_LAB_CLAIMS", "/run/commissaire-lab/claims"))


class AddressInUse(RuntimeError):
    pass


def check(address: str | ipaddress.IPv4Address) -> str:
    """Return address as a string; ValueError unless it is a usable loopback address."""
    try:
        ip = ipaddress.IPv4Address(str(address))
    except ValueError:
        raise ValueError(f"lab addresses must be IPv4 in 127.0.0.0/8, not {address!r}") from None
    if ip not in LOOPBACK:
        raise ValueError(f"lab addresses must be in 127.0.0.0/8 (never a real interface): {ip}")
    if ip in (MACHINE, LOOPBACK.network_address, LOOPBACK.broadcast_address):
        raise ValueError(f"{ip} is reserved for the machine itself; lab hosts use 127.0.100.1 and up")
    return str(ip)


def bindable(address: str, port: int) -> bool:
    """False when something already listens there (sshd sets SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _ClaimLock:
    def __enter__(self):
        CLAIMS.mkdir(parents=True, exist_ok=True)
        self._file = open(CLAIMS / ".lock", "w")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        self._file.close()


def _try_claim(address: str, port: int) -> bool:
    path = CLAIMS / f"{address}:{port}"
    try:
        owner = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        owner = 0
    if path.exists() and owner and _alive(owner):
        return False
    if not bindable(address, port):
        return False
    path.write_text(f"{os.getpid()}\n")
    return True


def claim(addresses: Iterable[str], port: int) -> list[str]:
    """Claim exactly these addresses, all or none; AddressInUse if one is taken."""
    wanted = [check(a) for a in addresses]
    with _ClaimLock():
        done: list[str] = []
        for address in wanted:
            if not _try_claim(address, port):
                _release(done, port)
                raise AddressInUse(f"{address}:{port} is in use (another lab or service)")
            done.append(address)
    return done


def claim_free(count: int, port: int, first: str = DEFAULT_FIRST) -> list[str]:
    """Claim the first `count` free addresses at or after `first`."""
    ip = ipaddress.IPv4Address(check(first))
    done: list[str] = []
    with _ClaimLock():
        while len(done) < count:
            if ip >= LOOPBACK.broadcast_address:
                _release(done, port)
                raise AddressInUse(f"no {count} free loopback addresses from {first}")
            if ip != MACHINE and _try_claim(str(ip), port):
                done.append(str(ip))
            ip += 1
    return done


def _release(addresses: Iterable[str], port: int) -> None:
    for address in addresses:
        path = CLAIMS / f"{address}:{port}"
        try:
            if int(path.read_text().strip() or 0) == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def release(addresses: Iterable[str], port: int) -> None:
    with _ClaimLock():
        _release(addresses, port)


def sweep_stale() -> None:
    """Remove claims whose owner died (the claims would be taken over anyway)."""
    if not CLAIMS.is_dir():
        return
    with _ClaimLock():
        for path in CLAIMS.glob("*:*"):
            try:
                owner = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                continue
            if not owner or not _alive(owner):
                path.unlink(missing_ok=True)


def listening() -> dict[tuple[str, int], int]:
    """{(address, port): socket inode} of every listening IPv4 TCP socket."""
    found: dict[tuple[str, int], int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hexaddr, hexport = fields[1].split(":")
            # the kernel prints the address as a host-order u32
            raw = int(hexaddr, 16).to_bytes(4, sys.byteorder)
            found[(socket.inet_ntoa(raw), int(hexport, 16))] = int(fields[9])
    return found
