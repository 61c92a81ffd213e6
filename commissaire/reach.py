"""Which addresses a service may open SSH connections to.

Each service that speaks SSH (investigator, watcher, clusterexec) gets a `Reach`
built from its own `ssh-allowed-networks` setting (a list of CIDR networks;
empty means any) and hands it down: every SSH path (host key fetch, probes,
Ansible runs) asks `refusal(address)` first, so a control plane confined to a
lab network cannot touch anything else, whatever address a client registers.
A settings object rather than a module global: two services in one process
(the all-in-one) keep their own settings, and a test cannot leak its setting
into the next one.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Reach:
    """The networks SSH may reach; no networks means any address."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def from_setting(cls, networks: Iterable[str] | None,
                     setting: str = "ssh-allowed-networks") -> Reach:
        """Parse the setting; ValueError names the bad entry."""
        if networks is None:
            return cls()
        if isinstance(networks, str):  # one string would be iterated char by char
            raise ValueError(f"{setting}: must be a list of networks, not {networks!r}")
        parsed = []
        for network in networks:
            try:
                parsed.append(ipaddress.ip_network(str(network), strict=False))
            except ValueError:
                raise ValueError(f"{setting}: {network!r} is not a network") from None
        return cls(tuple(parsed))

    def allowed_networks(self) -> list[str]:
        return [str(n) for n in self.networks]

    def refusal(self, address: str) -> str:
        """'' when `address` may be reached, else why not (for the host's status reason)."""
        if not self.networks:
            return ""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"{address} is not an IP address"
        if any(ip in network for network in self.networks):
            return ""
        return (f"{address} is outside the networks this control plane may reach over SSH "
                f"(ssh-allowed-networks: {', '.join(self.allowed_networks())})")


#: No restriction: the default of `ssh-allowed-networks`.
ANYWHERE = Reach()


def unreachable_reason(address: str, port: int) -> str:
    """What API callers see when SSH gets no usable answer. The same words whether
    the port refused, timed out, reset or spoke something else: a reason that
    told them apart would make host registration a port scanner of any network
    the service may reach. The detail belongs in the service's log."""
    return (f"cannot reach {address}:{port} over SSH: no SSH server answered "
            "(refused, timed out or not SSH; the service's log has the detail)")


def log_safe(text: object, limit: int = 300) -> str:
    """Text from a host or a network peer as one bounded log line (no newlines)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + "..."
