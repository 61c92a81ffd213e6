"""/api/v0/hosts, /host, /host/{address}, /host/{address}/creds, /host/{address}/status."""
from __future__ import annotations

from typing import Any

import falcon

from commissaire import errors
from commissaire.bus.clients import ContainerClient
from commissaire.identity import Identity
from commissaire.models import ADDRESS_SCHEMA, HOST_STATUSES, NAME_SCHEMA, Cluster, Host
from commissaire.validation import check_schema, validate_address
from commissaire_http.authorization import check_body_cluster
from commissaire_http.clientaddress import ClientAddress
from commissaire_http.resources.base import Bus, Resource, parse_query, read_json, respond

# A host registering itself may say which of its addresses to reach it on.
SELF_REGISTER_SCHEMA: dict[str, Any] = {
    **Host.input_schema,
    "properties": {**Host.input_schema["properties"], "address": {
        **ADDRESS_SCHEMA, "description": "the address to reach this host on (default: the "
        "connection's, or X-Forwarded-For's behind a trusted proxy)"}},
}


MAX_OFFSET = 10**9
NODE_STATUS_TIMEOUT = 5.0  # seconds GET /host/{address}/status waits for the node's status


class Hosts(Resource):
    """GET: hosts, filtered by ?cluster= and ?status=, paged by ?limit= and ?offset=."""

    def __init__(self, bus: Bus, page_limit: int = 1000) -> None:
        super().__init__(bus)
        self.page_limit = page_limit
        # What the query may hold: parsed with parse_query, shown in the document.
        self.query = {
            "cluster": NAME_SCHEMA,
            "status": {"enum": list(HOST_STATUSES), "type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": page_limit},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_query(req, self.query)
        cluster, status = query.get("cluster", ""), query.get("status", "")
        limit, offset = query.get("limit", 0), query.get("offset", 0)
        page = self.storage(req).list_hosts(cluster, status, limit, offset)
        resp.set_header("X-Total-Count", str(page.total))
        if limit and offset + limit < page.total:
            # Safe to paste: every value was matched against its pattern above.
            following = f"limit={limit}&offset={offset + limit}"
            following += f"&cluster={cluster}" if cluster else ""
            following += f"&status={status}" if status else ""
            resp.set_header("Link", f'<{req.path}?{following}>; rel="next"')
        respond(resp, [host.to_safe_dict() for host in page.items])


def create_host(resource: Resource, req: falcon.Request, resp: falcon.Response,
                address: str, body: Any) -> None:
    """Validate a host create body and store the host with its credentials."""
    host, creds, cluster = Host.input_to_records(address, body)
    check_body_cluster(req.context.get("identity"), cluster)
    try:
        outcome = resource.storage(req).create_host(host, creds, cluster)
    except errors.ValidationError as exc:
        # A well-formed source that names no configured storage handler is, like a
        # missing cluster, a conflict with the server's state, not malformed input.
        if exc.details.get("field") != "source":
            raise
        raise errors.Conflict(exc.description, field="source") from None
    resource.created_or_ok(resp, outcome)


class HostRecord(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        respond(resp, self.storage(req).get_host(validate_address(address)).to_safe_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        create_host(self, req, resp, validate_address(address), read_json(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        self.storage(req).delete_host(validate_address(address))
        respond(resp, [])


class SelfRegister(Resource):
    """PUT /api/v0/host: a host registers itself; its address comes from the connection.

    Only PUT: it shares the create code with HostRecord, not its other methods, so
    GET and DELETE here are 405s with `Allow: PUT` (they were inherited 500s).

    Behind a proxy, the address is taken from X-Forwarded-For only when the peer is
    a configured trusted proxy. A host that knows its own reachable address (a
    cloud host behind NAT) says so with "address" in the body.

    The path is usually a self-auth path (open to anyone). An anonymous caller
    registers only the address it connects from, into no cluster: naming a cluster
    would have the controller hand that cluster's container manager token to any
    machine on the network, and naming an address would send the controller's SSH
    to a machine of the caller's choosing. Both need credentials (a 403 naming the
    field otherwise); `commctl user-data` writes them into the user-data file.
    A caller scoped to clusters (a registrar's `clusters`) registers only into one
    of them.
    """

    def __init__(self, bus: Bus, trusted_proxies: list[str]) -> None:
        super().__init__(bus)
        self.client_address = ClientAddress(trusted_proxies)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req)
        if body is None:
            body = {}
        check_schema(SELF_REGISTER_SCHEMA, body)
        if not req.context.get("authenticated", False):
            for field in ("cluster", "address"):
                if body.get(field):
                    raise errors.Forbidden(
                        f"{field}: an anonymous self-registration may not choose its "
                        f"{field}; send credentials to register with a {field}")
        identity: Identity | None = req.context.get("identity")
        if identity is not None and identity.clusters \
                and body.get("cluster") not in identity.clusters:
            raise errors.Forbidden(
                "cluster: you may register hosts only into "
                + ", ".join(identity.clusters), field="cluster")
        given = body.get("address")
        address = given if given else self.client_address(req)
        body = {k: v for k, v in body.items() if k != "address"}
        create_host(self, req, resp, validate_address(address), body)


class HostCreds(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        creds = self.storage(req).reveal_creds(validate_address(address))
        respond(resp, {"ssh_priv_key": creds.ssh_priv_key, "remote_user": creds.remote_user})


class HostStatus(Resource):
    """The host's own status, and its node's status when its cluster has a manager."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        storage = self.storage(req)
        host = storage.get_host(validate_address(address))
        manager: dict[str, Any] = {}
        status_type = "host_only"
        if host.cluster:
            cluster = storage.get(Cluster, host.cluster)
            if cluster.container_manager:
                status_type = "host_and_container_manager"
                manager = self._node_status(req, cluster.container_manager, host.address)
        respond(resp, {
            "type": status_type,
            "host": {"status": host.status, "last_check": host.last_check,
                     "status_reason": host.status_reason},
            "container_manager": manager,
        })

    def _node_status(self, req: falcon.Request, manager: str, address: str) -> dict[str, Any]:
        try:
            return ContainerClient(self.bus, request_id=req.context.get("request_id"),
                                   timeout=NODE_STATUS_TIMEOUT,
                                   actor=req.context.get("identity")).get_node_status(manager, address)
        except (errors.ServiceTimeout, errors.ContainerManagerError, errors.NotFound) as exc:
            return {"container_manager": manager, "status": "unknown", "reason": exc.description}
