"""A test authentication plugin that answers with an Identity (this repository's
contract): the caller named by X-Test-User, in the groups of X-Test-Groups and
scoped to the clusters of X-Test-Clusters (comma-separated), authenticated by
method "test"; its role comes from the server's role bindings. Never for a server
anyone else can reach: it believes headers."""
from __future__ import annotations

import falcon

from commissaire.identity import Identity
from commissaire_http.authentication import Authenticator


def _listed(req: falcon.Request, header: str) -> tuple[str, ...]:
    return tuple(part for part in (req.get_header(header) or "").split(",") if part)


class HeaderPlugin(Authenticator):
    def identify(self, req: falcon.Request) -> Identity | bool:
        name = req.get_header("X-Test-User")
        if name is None:
            return False
        return self.roles.identity(name, "test", groups=_listed(req, "X-Test-Groups"),
                                   clusters=_listed(req, "X-Test-Clusters"))

    def authenticate(self, req: falcon.Request) -> bool:
        return req.get_header("X-Test-User") is not None


PluginClass = HeaderPlugin
