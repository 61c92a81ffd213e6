"""`allowed-urls`: the only API servers this containermgr service may call.

A container manager's `server_url` comes from an API caller, and the service
sends the record's bearer token there; without a limit it would call (and hand
the token to) any host and port the controller can reach. Each entry is

``SCHEME://HOST[:PORT]``
    SCHEME ``http`` or ``https``. HOST is a DNS name (matched as written), ``*``
    (any host), or an IP address or CIDR network (``10.0.0.0/8``,
    ``[fd00::/8]``), which matches every URL whose host resolves *only* to
    addresses inside it. PORT is a number or ``*``; without it the scheme's
    default port (443, 80).

A URL is allowed when one entry matches its scheme, host and port. The check
runs before every call, after DNS resolution (a name that resolves to an
address outside the networks is refused), and again on the connected socket's
peer address, so a name that resolves differently between the two (DNS
rebinding) is refused too. No entries (the default) allows nothing: an
operator lists the API servers the service may reach.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from commissaire import errors

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PORTS = {"http": 80, "https": 443}
SETTING = "allowed-urls"

_ENTRY = re.compile(
    r"(?P<scheme>https?)://"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+(?:/\d{1,3})?)\]|(?P<host>\*|[A-Za-z0-9._-]+(?:/\d{1,2})?))"
    r"(?::(?P<port>\d{1,5}|\*))?/?")


@dataclass(frozen=True)
class Entry:
    scheme: str
    #: A lower-case DNS name, "*" for any host, or "" when `network` is set.
    host: str
    network: Network | None
    #: None: any port.
    port: int | None

    def matches_port(self, scheme: str, port: int) -> bool:
        return self.scheme == scheme and self.port in (None, port)

    def __str__(self) -> str:
        host = self.host or (f"[{self.network}]" if self.network and self.network.version == 6
                             else str(self.network))
        return f"{self.scheme}://{host}:{'*' if self.port is None else self.port}"


def _parse_entry(text: object) -> Entry:
    match = _ENTRY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{SETTING}: {text!r} is not SCHEME://HOST[:PORT] (http or https; "
                         "HOST a name, *, an address or a CIDR network; PORT a number or *)")
    scheme = match["scheme"]
    port_text = match["port"]
    port = None if port_text == "*" else int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{SETTING}: {text!r} has no valid port")
    host = match["v6"] or match["host"]
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        if "/" in host:
            raise ValueError(f"{SETTING}: {text!r} has no valid network") from None
        return Entry(scheme, host.lower().rstrip("."), None, port)
    return Entry(scheme, "", network, port)


def _resolve(host: str, port: int) -> set[str]:
    """Every address `host` resolves to (an IP literal is itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {str(info[4][0]).split("%", 1)[0] for info in infos}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int


def origin_of(url: str) -> Origin:
    """Scheme, host and port of an http(s) URL; ValidationError when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port, parts = None, None  # type: ignore[assignment]
    if parts is None or parts.scheme not in DEFAULT_PORTS or not parts.hostname \
            or parts.username is not None or parts.password is not None:
        raise errors.ValidationError("must be an http(s)://host[:port] URL without user "
                                     "information", field="options.server_url")
    return Origin(parts.scheme, parts.hostname.lower().rstrip("."),
                  port or DEFAULT_PORTS[parts.scheme])


@dataclass(frozen=True)
class AllowedURLs:
    """The parsed `allowed-urls` setting of one containermgr service."""

    entries: tuple[Entry, ...] = ()

    @classmethod
    def from_setting(cls, values: Iterable[str] | None) -> AllowedURLs:
        if values is None:
            return cls()
        if isinstance(values, str):
            raise ValueError(f"{SETTING}: must be a list of SCHEME://HOST[:PORT], "
                             f"not {values!r}")
        return cls(tuple(_parse_entry(v) for v in values))

    def __str__(self) -> str:
        return ", ".join(str(e) for e in self.entries) or "none"

    def _networks(self, origin: Origin) -> list[Network] | None:
        """None: any address (a name or * entry matches); else the networks to be in."""
        candidates = [e for e in self.entries if e.matches_port(origin.scheme, origin.port)]
        if any(e.host in ("*", origin.host) for e in candidates if not e.network):
            return None
        return [e.network for e in candidates if e.network is not None]

    def peer_check(self, url: str) -> Callable[[str], bool]:
        """Whether a connected peer's address may serve `url` (no DNS involved)."""
        networks = self._networks(origin_of(url))
        if networks is None:
            return _any_address
        return lambda address: _inside(address, networks)

    def check(self, url: str, name: str,
              resolve: Callable[[str, int], set[str]] | None = None) -> None:
        """Refuse `url` unless allowed, resolving its host name for network entries.

        ContainerManagerError in our own words, naming the setting, when refused."""
        origin = origin_of(url)
        networks = self._networks(origin)
        if networks is None:
            return
        refused = errors.ContainerManagerError(
            f"container manager {name!r}: its server_url is not one this containermgr "
            f"service may call (its {SETTING} setting: {self})")
        if not networks:
            raise refused
        try:
            addresses = (resolve or _resolve)(origin.host, origin.port)
        except (OSError, UnicodeError):
            raise errors.ContainerManagerError(
                f"container manager {name!r}: cannot connect to its API server") from None
        if not addresses or not all(_inside(a, networks) for a in addresses):
            raise refused


def _any_address(_address: str) -> bool:
    return True


def _inside(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
