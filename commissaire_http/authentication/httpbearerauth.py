"""Bearer-token authentication with Commissaire's own API tokens.

Reads `Authorization: Bearer cmt_...` and asks the storage service who the token
stands for (storage.verify_token): the caller is the Identity (token name,
method "token", the token's role, its clusters as scope). A bearer value that is
not a Commissaire token (no `cmt_` prefix) is left to the next plugin (a
Kubernetes token, say); a `cmt_` value that is malformed, unknown, revoked or
expired is a 401 "invalid token" and counts in the failure throttle like a
wrong password, under the token's id (`claimed_user`).

No cache of valid tokens: every request is verified by the storage service (one
bus call, two store reads), so a revoked token is refused from the very next
request, in every worker and on every server. A cache would save that call but
would have to be invalidated by the storage notifications in every worker to
keep revocation immediate; the request costs a bus call anyway.

Options: `timeout`, seconds to wait for the storage service (default: the bus's).
"""
from __future__ import annotations

import falcon

from commissaire import apitokens, errors
from commissaire.bus.clients import StorageClient
from commissaire.identity import Identity, Role
from commissaire_http.authentication import Authenticator

SCHEME = "bearer"


def bearer(req: falcon.Request) -> str | None:
    """The value of an `Authorization: Bearer ...` header; None for any other."""
    header = req.get_header("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != SCHEME:
        return None
    return value.strip()


class HTTPBearerAuth(Authenticator):
    def __init__(self, timeout: float | None = None) -> None:
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise TypeError("timeout must be a positive number of seconds")
        self.timeout = None if timeout is None else float(timeout)

    @staticmethod
    def _token(req: falcon.Request) -> str | None:
        """A bearer value that claims to be one of ours, else None (not ours to judge)."""
        value = bearer(req)
        if value is None or not value.startswith(apitokens.PREFIX):
            return None
        return value

    def claimed_user(self, req: falcon.Request) -> str | None:
        token = self._token(req)
        if token is None:
            return None
        token_id = apitokens.token_id(token)
        # Malformed ones share one name: they are guesses all the same.
        return f"token:{token_id or 'malformed'}"

    def authenticate(self, req: falcon.Request) -> bool:
        return self.identify(req) is not False

    def identify(self, req: falcon.Request) -> Identity | bool:
        token = self._token(req)
        if token is None:
            return False
        if apitokens.token_id(token) is None:  # not worth a bus call
            raise errors.InvalidToken("invalid token")
        if self.bus is None:
            raise errors.BusUnavailable("the token plugin was loaded without a bus")
        answer = StorageClient(self.bus, request_id=req.context.get("request_id"),
                               timeout=self.timeout).verify_token(token)
        return self.roles.identity(answer["name"], "token", role=Role(answer["role"]),
                                   clusters=tuple(answer["clusters"]))


PluginClass = HTTPBearerAuth
