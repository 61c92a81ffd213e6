"""Which client sent a request, believing X-Forwarded-For only from trusted proxies.

Shared by self-registration (the host's address) and the authentication throttle
(whose failures are counted): both must agree, and neither may believe a header
a client can forge when it talks to the server directly.
"""
from __future__ import annotations

import ipaddress

import falcon


class ClientAddress:
    """`client_address(req)`: the peer, or behind trusted proxies the right-most
    X-Forwarded-For hop that no trusted proxy added."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def __call__(self, req: falcon.Request) -> str:
        peer = req.remote_addr or ""
        if self.is_trusted(peer):
            hops = [h.strip() for h in req.get_header("X-Forwarded-For", default="").split(",")]
            # The right-most hop not added by a trusted proxy is the client.
            for hop in reversed([h for h in hops if h]):
                if not self.is_trusted(hop):
                    return hop
        return peer
