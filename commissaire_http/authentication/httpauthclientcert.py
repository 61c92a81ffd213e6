"""Client-certificate authentication.

The TLS layer (gunicorn with --tls-clientverifyfile) has already verified the
chain; this plugin admits a request that came with a verified certificate, and,
when `cn` is configured, only if the certificate's common name matches (else 403).
The caller is the Identity (CN, method "client-certificate"); its role comes from
role-bindings' `certificates`.
"""
from __future__ import annotations

from typing import Any

import falcon

from commissaire import errors
from commissaire.identity import Identity
from commissaire_http.authentication import Authenticator


def peer_certificate(req: falcon.Request) -> dict[str, Any] | None:
    sock = req.env.get("gunicorn.socket")
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        return getpeercert() or None
    except ValueError:
        return None


def common_name(cert: dict[str, Any]) -> str | None:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class HTTPClientCertAuth(Authenticator):
    def __init__(self, cn: str | None = None) -> None:
        self.cn = cn

    def authenticate(self, req: falcon.Request) -> bool:
        return self._accepted(req) is not None

    def identify(self, req: falcon.Request) -> Identity | bool:
        cn = self._accepted(req)
        if cn is None:
            return False
        return self.roles.identity(cn, "client-certificate")

    def _accepted(self, req: falcon.Request) -> str | None:
        """The CN of a verified certificate this server accepts ("" without a CN)."""
        cert = peer_certificate(req)
        if cert is None:
            return None
        cn = common_name(cert)
        if self.cn is not None and cn != self.cn:
            raise errors.Forbidden("client certificate is not accepted: its common name "
                                   "is not the one this server requires")
        return cn or ""


PluginClass = HTTPClientCertAuth
