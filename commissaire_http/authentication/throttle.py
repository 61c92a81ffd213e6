"""Throttling of failed authentications: per client address, per user name.

Design (README "Authentication"):

- A client address with `limit` failures within `window` seconds gets 429 with
  Retry-After for every request until its oldest counted failure ages out.
- The pair (user name, address) is limited the same way.
- A user name with `limit` failures within the window from all addresses together
  is "under attack": each address then gets at most one failure for that name per
  window. This slows guessing spread over many addresses without locking the real
  user out: a correct password from an address that has not itself failed for the
  name is still checked and accepted.
- A success clears the pair's failures, never the address's (a caller with one
  valid account must not be able to reset its own address counter).

Unknown user names are counted exactly like known ones (no oracle). IPv6 clients
are counted per /64, which one host or network usually has whole. The state
lives in the process (each gunicorn worker has its own): with W workers an
address gets at most W x limit failures per window.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

K = TypeVar("K")

# Bound on the keys of each table; the least recently failed are dropped first.
MAX_KEYS = 50_000


def address_key(address: str) -> str:
    """The unit an address is counted in: itself for IPv4, its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class _Table(dict[K, deque[float]]):
    """key -> the times of its most recent failures (at most `limit` kept)."""

    def add(self, key: K, now: float, limit: int) -> None:
        times = self.pop(key, None) or deque(maxlen=limit)
        times.append(now)
        self[key] = times  # re-inserted: dict order is least recently failed first
        if len(self) > MAX_KEYS:  # drop a tenth at once: not a full scan per failure
            for old in list(self)[: MAX_KEYS // 10]:
                del self[old]

    def forget_before(self, cutoff: float) -> None:
        for key in [k for k, times in self.items() if times[-1] <= cutoff]:
            del self[key]


class FailureThrottle:
    def __init__(self, limit: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._addresses: _Table[str] = _Table()
        self._pairs: _Table[tuple[str, str]] = _Table()
        self._users: _Table[str] = _Table()
        self._next_sweep = 0.0

    def _recent(self, times: deque[float] | None, now: float) -> list[float]:
        return [t for t in times or () if t > now - self.window]

    def _wait(self, times: deque[float] | None, now: float, limit: int) -> float:
        """Seconds until fewer than `limit` of these failures are within the window."""
        recent = self._recent(times, now)
        if len(recent) < limit:
            return 0.0
        return recent[len(recent) - limit] + self.window - now

    def retry_after(self, address: str, users: Iterable[str]) -> float:
        """0 when an attempt from `address` for `users` may be checked, else the
        seconds to wait."""
        now = self.clock()
        key = address_key(address)
        with self._lock:
            self._sweep(now)
            wait = self._wait(self._addresses.get(key), now, self.limit)
            for user in users:
                pair = self._pairs.get((user, key))
                wait = max(wait, self._wait(pair, now, self.limit))
                attack = self._wait(self._users.get(user), now, self.limit)
                if attack > 0:
                    # Under attack: one failure per address for this name.
                    wait = max(wait, min(attack, self._wait(pair, now, 1)))
        return wait

    def failure(self, address: str, users: Iterable[str] = ()) -> None:
        """One failed attempt from `address`, claiming the names `users`."""
        now = self.clock()
        key = address_key(address)
        with self._lock:
            self._addresses.add(key, now, self.limit)
            for user in users:
                self._pairs.add((user, key), now, self.limit)
                self._users.add(user, now, self.limit)

    def success(self, address: str, users: Iterable[str] = ()) -> None:
        with self._lock:
            for user in users:
                self._pairs.pop((user, address_key(address)), None)

    def _sweep(self, now: float) -> None:
        """Forget keys whose failures are all older than the window (once a window)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        for table in (self._addresses, self._pairs, self._users):
            table.forget_before(now - self.window)
