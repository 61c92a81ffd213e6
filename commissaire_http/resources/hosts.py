"""/api/v0/hosts, /host, /host/{address}, /host/{address}/creds, /host/{address}/status."""
from __future__ import annotations

import ipaddress
from typing import Any

import falcon

from commissaire import errors
from commissaire.models import HOST_STATUSES, Host
from commissaire.validation import validate_address, validate_name
from commissaire_http.resources.base import Bus, Resource, read_json, respond


def _int_param(req: falcon.Request, name: str, default: int, maximum: int | None = None,
               minimum: int = 0) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise errors.ValidationError(f"must be an integer of at least {minimum}", field=name)
    value = int(raw)
    if maximum is not None and value > maximum:
        raise errors.ValidationError(f"must be at most {maximum}", field=name)
    return value


class Hosts(Resource):
    """GET: hosts, filtered by ?cluster= and ?status=, paged by ?limit= and ?offset=."""

    def __init__(self, bus: Bus, page_limit: int = 1000) -> None:
        super().__init__(bus)
        self.page_limit = page_limit

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        cluster = req.get_param("cluster") or ""
        status = req.get_param("status") or ""
        if cluster:
            validate_name(cluster, field="cluster")
        if status and status not in HOST_STATUSES:
            raise errors.ValidationError("must be one of: " + ", ".join(HOST_STATUSES), field="status")
        limit = _int_param(req, "limit", 0, self.page_limit, minimum=1)
        offset = _int_param(req, "offset", 0)
        page = self.call(req, "storage.list_hosts", cluster=cluster, status=status,
                         limit=limit, offset=offset)
        resp.set_header("X-Total-Count", str(page["total"]))
        if limit and offset + limit < page["total"]:
            query = f"limit={limit}&offset={offset + limit}"
            query += f"&cluster={cluster}" if cluster else ""
            query += f"&status={status}" if status else ""
            resp.set_header("Link", f'<{req.path}?{query}>; rel="next"')
        respond(resp, page["items"])


class HostRecord(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        respond(resp, self.call(req, "storage.get_host", address=validate_address(address)))

    def on_put(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        self.create(req, resp, address, read_json(req))

    def create(self, req: falcon.Request, resp: falcon.Response, address: str, body: Any) -> None:
        host, creds, cluster = Host.input_to_records(address, body)
        outcome = self.call(req, "storage.create_host", host=host.to_dict(),
                            creds=creds.to_dict(), cluster=cluster)
        self.created_or_ok(resp, outcome)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        respond(resp, self.call(req, "storage.delete_host", address=validate_address(address)))


class SelfRegister(HostRecord):
    """PUT /api/v0/host: a host registers itself; its address comes from the connection.

    Behind a proxy, the address is taken from X-Forwarded-For only when the peer is
    a configured trusted proxy. A host that knows its own reachable address (a
    cloud host behind NAT) says so with "address" in the body.
    """

    def __init__(self, bus: Bus, trusted_proxies: list[str]) -> None:
        super().__init__(bus)
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def client_address(self, req: falcon.Request) -> str:
        peer = req.remote_addr or ""
        if self._is_trusted(peer):
            hops = [h.strip() for h in req.get_header("X-Forwarded-For", default="").split(",")]
            # The right-most hop not added by a trusted proxy is the client.
            for hop in reversed([h for h in hops if h]):
                if not self._is_trusted(hop):
                    return hop
        return peer

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:  # type: ignore[override]
        body = read_json(req)
        given = body.get("address") if isinstance(body, dict) else None
        address = given if given else self.client_address(req)
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "address"}
        self.create(req, resp, validate_address(address), body)


class HostCreds(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        creds = self.call(req, "storage.get_creds", address=validate_address(address))
        respond(resp, {"ssh_priv_key": creds["ssh_priv_key"], "remote_user": creds["remote_user"]})


class HostStatus(Resource):
    """The host's own status, and its node's status when its cluster has a manager."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        host = self.call(req, "storage.get_host", address=validate_address(address))
        manager: dict[str, Any] = {}
        status_type = "host_only"
        if host.get("cluster"):
            cluster = self.call(req, "storage.get", kind="Cluster", key=host["cluster"])
            if cluster.get("container_manager"):
                status_type = "host_and_container_manager"
                manager = self._node_status(req, cluster["container_manager"], host["address"])
        respond(resp, {
            "type": status_type,
            "host": {"status": host["status"], "last_check": host["last_check"],
                     "status_reason": host.get("status_reason", "")},
            "container_manager": manager,
        })

    def _node_status(self, req: falcon.Request, manager: str, address: str) -> dict[str, Any]:
        try:
            return dict(self.bus.call("container.get_node_status",
                                      {"container_manager": manager, "address": address},
                                      timeout=5.0, request_id=req.context.get("request_id")))
        except (errors.ServiceTimeout, errors.ContainerManagerError, errors.NotFound) as exc:
            return {"container_manager": manager, "status": "unknown", "reason": exc.description}
