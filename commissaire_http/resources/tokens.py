"""/api/v0/tokens and /api/v0/token/{name}: API tokens, managed by admins.

PUT creates a token and answers its record with the token string (`token`),
shown this once and never again (the store keeps only its digest); a name in
use is a 409, as a token is not idempotent (the same body cannot give back the
same secret). DELETE revokes: the token's next request is refused. A caller
scoped to clusters (a scoped admin token) manages no token (the routes' scope is
"unscoped", authorization.ScopeCheck): it could otherwise mint an unscoped one.
"""
from __future__ import annotations

import falcon

from commissaire.models import ApiToken
from commissaire.validation import validate_name
from commissaire_http.resources.base import Resource, read_json, respond


class Tokens(Resource):
    """GET: every token, without any secret."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        respond(resp, [token.to_safe_dict() for token in self.storage(req).list_tokens()])


class Token(Resource):
    """GET, PUT (create: the token shown once), DELETE (revoke)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        respond(resp, self.storage(req).get_token(validate_name(name)).to_safe_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        record = ApiToken.from_input(validate_name(name), read_json(req))
        created = self.storage(req).create_token(record)
        # Shown once: no cache may keep it.
        resp.set_header("Cache-Control", "no-store")
        respond(resp, {**created.record.to_safe_dict(), "token": created.token},
                falcon.HTTP_201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.storage(req).revoke_token(validate_name(name))
        respond(resp, [])
