"""Roles enforced on every endpoint, after routing.

Each method of each route in app.py's table declares the role it needs
(`"role": Role.X`, or None for a document open to anyone); a caller whose role
does not grant it gets a 403 naming the role needed and its own. A request
without an identity got here only on a self-auth path (the authentication
middleware refuses it anywhere else): the resource decides what anonymity may do.
"""
from __future__ import annotations

import logging
from typing import Any

import falcon

from commissaire import errors
from commissaire.identity import Identity, Role

logger = logging.getLogger(__name__)

MAX_LOGGED_NAME = 128


def describe(identity: Identity | None) -> str:
    """The caller as a log line names it: its name and method, escaped (a name
    with a newline cannot forge a line) and bounded; never a credential."""
    if identity is None:
        return "anonymous"
    return describe_caller(identity.name, identity.method)


def describe_caller(name: str, method: str) -> str:
    return f"{ascii(name[:MAX_LOGGED_NAME])} ({ascii(method[:MAX_LOGGED_NAME])[1:-1]})"


def caller(req: falcon.Request) -> str:
    return describe(req.context.get("identity"))


def refusal(needed: Role, identity: Identity) -> errors.Forbidden:
    return errors.Forbidden(f"needs the {needed.value} role; you are {identity.role.value}",
                            needed_role=needed.value)


class RoleCheck:
    """The role each (route, method) needs, checked before the responder runs."""

    def __init__(self, table: list[dict[str, Any]]) -> None:
        self.needed: dict[tuple[str, str], Role | None] = {
            (route["path"], method): doc["role"]
            for route in table for method, doc in route["methods"].items()}

    def process_resource(self, req: falcon.Request, _resp: falcon.Response,
                         _resource: Any, _params: dict[str, Any]) -> None:
        key = (req.uri_template or "", req.method)
        if key not in self.needed:  # no route, or a method falcon answers itself (405)
            return
        needed = self.needed[key]
        identity: Identity | None = req.context.get("identity")
        if needed is None or identity is None:
            return
        if not identity.role.grants(needed):
            logger.info("%s %s refused to %s: needs the %s role, has %s", req.method,
                        req.uri_template, describe(identity), needed.value,
                        identity.role.value)
            raise refusal(needed, identity)
