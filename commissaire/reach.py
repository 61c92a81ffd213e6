"""Which addresses this process may open SSH connections to.

Set once per process from the services' `ssh-allowed-networks` setting (a list of
CIDR networks; empty means any). Every SSH path (host key fetch, probes, Ansible
runs) asks `refusal(address)` first, so a control plane confined to a lab network
cannot touch anything else, whatever address a client registers.
"""
from __future__ import annotations

import ipaddress
import threading

_lock = threading.Lock()
_allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []


def set_allowed_networks(networks: list[str]) -> None:
    """Replace the allowed networks; raises ValueError naming a bad entry."""
    parsed = []
    for network in networks:
        try:
            parsed.append(ipaddress.ip_network(network, strict=False))
        except ValueError:
            raise ValueError(f"ssh-allowed-networks: {network!r} is not a network") from None
    with _lock:
        _allowed[:] = parsed


def allowed_networks() -> list[str]:
    with _lock:
        return [str(n) for n in _allowed]


def refusal(address: str) -> str:
    """'' when `address` may be reached, else why not (for the host's status reason)."""
    with _lock:
        allowed = list(_allowed)
    if not allowed:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address} is not an IP address"
    if any(ip in network for network in allowed):
        return ""
    return (f"{address} is outside the networks this control plane may reach over SSH "
            f"(ssh-allowed-networks: {', '.join(str(n) for n in allowed)})")
