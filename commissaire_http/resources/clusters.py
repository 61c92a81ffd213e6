"""Cluster members (/cluster/{name}/hosts[/{address}]) and rolling operations."""
from __future__ import annotations

from typing import Any

import falcon

from commissaire import errors
from commissaire.models import ADDRESS_SCHEMA, ClusterOperation
from commissaire.validation import check_schema, validate_address, validate_name
from commissaire_http.resources.base import Bus, Resource, read_json, respond

MAX_MEMBERS = 10000
_ADDRESSES = {"type": "array", "items": ADDRESS_SCHEMA, "maxItems": MAX_MEMBERS}
# PUT /cluster/{name}/hosts: replace the members if "old" is the current list.
MEMBERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"old": {**_ADDRESSES, "description": "the members the client saw"},
                   "new": {**_ADDRESSES, "description": "the members wanted"}},
    "required": ["old", "new"],
    "additionalProperties": False,
}


class ClusterMembers(Resource):
    """GET the member list; PUT {"old": [...], "new": [...]} replaces it if old is current."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        respond(resp, self.storage(req).cluster_hosts(validate_name(name)))

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        name = validate_name(name)
        body = read_json(req)
        if body is None:
            raise errors.ValidationError('the body must be {"old": [...], "new": [...]}')
        check_schema(MEMBERS_SCHEMA, body)
        lists = {field: [validate_address(a, field) for a in body[field]]
                 for field in ("old", "new")}
        respond(resp, self.storage(req).cluster_set_hosts(name, lists["old"], lists["new"]))


class ClusterMember(Resource):
    """GET: membership test (200 or 404). PUT adds, DELETE removes (both idempotent)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, address: str) -> None:
        address = validate_address(address)
        members = self.storage(req).cluster_hosts(validate_name(name))
        if address not in members:
            raise errors.NotFound(f"host {address!r} is not in cluster {name!r}")
        respond(resp, [address])

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str, address: str) -> None:
        respond(resp, self.storage(req).cluster_add_host(validate_name(name),
                                                         validate_address(address)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str, address: str) -> None:
        self.storage(req).cluster_remove_host(validate_name(name), validate_address(address))
        respond(resp, [])


class ClusterOperationResource(Resource):
    """PUT starts (201; 409 while one runs), GET shows progress, DELETE aborts."""

    def __init__(self, bus: Bus, model: type[ClusterOperation]) -> None:
        super().__init__(bus)
        self.model = model

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        respond(resp, self.storage(req).get_operation(self.model, validate_name(name))
                .to_safe_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        record = self.model.from_input(validate_name(name), read_json(req))
        if not isinstance(record, ClusterOperation):  # from_input builds its own class
            raise TypeError(f"{self.model.kind}.from_input built a {record.kind}")
        respond(resp, self.storage(req).start_operation(record).to_safe_dict(),
                falcon.HTTP_201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        respond(resp, self.storage(req).abort_operation(self.model, validate_name(name))
                .to_safe_dict())
