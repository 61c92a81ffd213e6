"""How many hosts may be down at once (max_unavailable), and how many more may start."""
from __future__ import annotations

import math


def limit(max_unavailable: int | str | None, total: int) -> int:
    """The number of hosts allowed down together. A percentage rounds down, but never
    below one host: an operation that may never act would never finish."""
    if max_unavailable is None:
        return 1
    if isinstance(max_unavailable, str) and max_unavailable.endswith("%"):
        return max(1, math.floor(total * int(max_unavailable[:-1]) / 100))
    return max(1, int(max_unavailable))


def free_slots(allowed: int, in_flight: int, unhealthy_idle: int) -> int:
    """Hosts that may start now: hosts being acted on and hosts already unhealthy
    (not being acted on) both count against the budget."""
    return max(0, allowed - in_flight - unhealthy_idle)
