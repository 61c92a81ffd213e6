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
from commissaire.bus.clients import Caller, StorageClient
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


# What a route method's `scope` says it acts on, for callers scoped to clusters
# (Identity.clusters: a registrar, a scoped API token). No `scope`: not limited.
SCOPE_CLUSTER = "cluster"  # the path's {name} is a cluster
SCOPE_HOST = "host"  # the path's {address} is a host: its cluster must be in scope
SCOPE_HOSTS_QUERY = "hosts-query"  # ?cluster= is required, and in scope
SCOPE_BODY = "body"  # the resource checks the cluster its body names
SCOPE_UNSCOPED = "unscoped"  # records shared by every cluster: unscoped callers only
SCOPES = (SCOPE_CLUSTER, SCOPE_HOST, SCOPE_HOSTS_QUERY, SCOPE_BODY, SCOPE_UNSCOPED)


def outside(field: str, identity: Identity) -> errors.Forbidden:
    return errors.Forbidden(f"{field}: you may act only on the clusters "
                            + ", ".join(identity.clusters), field=field)


class ScopeCheck:
    """Callers scoped to clusters act only on those: checked after the role, by what
    each route method declares it acts on (its `scope`)."""

    def __init__(self, table: list[dict[str, Any]], bus: Caller) -> None:
        self.bus = bus
        self.scopes: dict[tuple[str, str], str] = {
            (route["path"], method): doc["scope"]
            for route in table for method, doc in route["methods"].items() if doc.get("scope")}
        unknown = set(self.scopes.values()) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown route scope(s): {sorted(unknown)}")

    def process_resource(self, req: falcon.Request, _resp: falcon.Response,
                         _resource: Any, params: dict[str, Any]) -> None:
        identity: Identity | None = req.context.get("identity")
        if identity is None or not identity.clusters:
            return
        scope = self.scopes.get((req.uri_template or "", req.method))
        if scope == SCOPE_CLUSTER and params.get("name") not in identity.clusters:
            raise outside("name", identity)
        if scope == SCOPE_HOSTS_QUERY and req.params.get("cluster") not in identity.clusters:
            raise outside("cluster", identity)
        if scope == SCOPE_HOST and self._host_cluster(req, params) not in identity.clusters:
            raise outside("address", identity)
        if scope == SCOPE_UNSCOPED:
            logger.info("%s %s refused to %s: scoped to clusters", req.method,
                        req.uri_template, describe(identity))
            raise errors.Forbidden("scope: a caller scoped to clusters may not do this "
                                   "(it concerns every cluster)", field="scope")

    def _host_cluster(self, req: falcon.Request, params: dict[str, Any]) -> str | None:
        """The cluster of the host the path names; None when there is none (a host
        that does not exist is outside every scope: no 404 tells it apart)."""
        try:
            host = StorageClient(self.bus, request_id=req.context.get("request_id"),
                                 actor=req.context.get("identity")
                                 ).get_host(str(params.get("address", "")))
        except (errors.NotFound, errors.ValidationError):
            return None
        return host.cluster or None


def check_body_cluster(identity: Identity | None, cluster: str) -> None:
    """A scoped caller names one of its clusters in a body that places a host."""
    if identity is not None and identity.clusters and cluster not in identity.clusters:
        raise outside("cluster", identity)
