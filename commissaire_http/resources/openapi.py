"""GET /api/v0/openapi.json: the OpenAPI 3.1 document of the whole API.

Built from the same route table the app is wired from and the models' own
input schemas, so the document cannot drift from what the server accepts.
"""
from __future__ import annotations

from typing import Any

import falcon

from commissaire import __version__

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "title": {"type": "string"},
        "description": {"type": "string"}, "field": {"type": "string"}},
        "required": ["code", "title", "description"]}},
}
_ERRORS = {
    "400": "Malformed JSON or failed validation (the body names the field)",
    "401": "Missing or bad credentials", "403": "Not allowed",
    "404": "No such record", "409": "Conflicts with what is stored",
    "503": "Store or bus unavailable (see Retry-After)", "504": "A service did not answer in time",
}


def build_document(routes: list[dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        item: dict[str, Any] = {}
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in route["path"].split("{")[1:] for p in [p.split("}")[0]]]
        for method, doc in route["methods"].items():
            op: dict[str, Any] = {"summary": doc["summary"], "tags": [route["tag"]],
                                  "responses": {}}
            if params:
                op["parameters"] = list(params)
            if doc.get("query"):
                op.setdefault("parameters", []).extend(
                    {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                    for q in doc["query"])
            if doc.get("body"):
                op["requestBody"] = {"required": doc.get("body_required", False), "content": {
                    "application/json": {"schema": doc["body"]}}}
            for code, text in doc.get("ok", {"200": "OK"}).items():
                op["responses"][code] = {"description": text,
                                         "content": {"application/json": {"schema": {}}}}
            for code, text in _ERRORS.items():
                op["responses"][code] = {"description": text, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            item[method.lower()] = op
        paths[route["path"]] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Commissaire", "version": __version__,
                 "description": "Agentless control plane for fleets of Linux hosts."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"basic": []}],
    }


class OpenAPI:
    def __init__(self, routes: list[dict[str, Any]]) -> None:
        self.document = build_document(routes)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
