"""Named records that share one shape of resource: clusters, networks, container managers.

/api/v0/<plural> lists names; /api/v0/<singular>/{name} gets, creates (PUT) and
deletes one record.
"""
from __future__ import annotations

import falcon

from commissaire.models import Model
from commissaire.validation import validate_name
from commissaire_http.resources.base import Bus, Resource, read_json, respond


class RecordNames(Resource):
    """GET: the names of every record of one kind."""

    def __init__(self, bus: Bus, model: type[Model]) -> None:
        super().__init__(bus)
        self.model = model

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        respond(resp, self.storage(req).list_names(self.model))


class Record(Resource):
    """GET, PUT (create; identical re-PUT is a no-op, a different one 409), DELETE."""

    def __init__(self, bus: Bus, model: type[Model]) -> None:
        super().__init__(bus)
        self.model = model

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        respond(resp, self.storage(req).get(self.model, validate_name(name)).to_safe_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        record = self.model.from_input(validate_name(name), read_json(req))
        self.created_or_ok(resp, self.storage(req).create(record))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.storage(req).delete(self.model, validate_name(name))
        respond(resp, [])
