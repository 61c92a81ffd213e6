"""GET /api/v0/openapi.json: the OpenAPI 3.1 document of the whole API.

Built from the same route table the app is wired from: request bodies, query and
path parameters are described by the very JSON schemas the server validates them
with (the models' `input_schema`, `NAME_SCHEMA`, `ADDRESS_SCHEMA`, ...), so the
document cannot drift from what the server accepts. Every answer the server can
give is listed, errors included (400 names the field; 401 with WWW-Authenticate;
403 names the role needed; 405 with Allow; 413; 431; 429 and 503 with Retry-After;
504). Each operation says which role it needs: `x-commissaire-role` and its
description ("Needs the operator role.").
"""
from __future__ import annotations

from typing import Any

import falcon

from commissaire import __version__
from commissaire.identity import Role
from commissaire.models import ADDRESS_SCHEMA, NAME_SCHEMA
from commissaire_http.authentication import self_auth_path

# The path parameters of the route table and what each must be.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {"name": NAME_SCHEMA, "address": ADDRESS_SCHEMA}

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "title": {"type": "string"},
        "description": {"type": "string"},
        "field": {"type": "string", "description": "the field, parameter or header at fault"},
        "needed_role": {"type": "string", "description": "the role the operation needs "
                        "(a 403 for a caller whose role does not grant it)"}},
        "required": ["code", "title", "description"]}},
    "required": ["error"],
}
_STRING = {"schema": {"type": "string"}}
_REQUEST_ID = {"description": "The request's id, as given (alphanumeric, up to 64 "
               "characters) or made up; it follows the request into the services' logs",
               **_STRING}
_RETRY_AFTER = {"description": "Seconds to wait", "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"}}
# Every error an operation may answer, with the headers that come with it.
_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("Malformed JSON, failed validation, or an unknown query parameter: "
            "error.field names the field", {}),
    "401": ("Missing or bad credentials", {"WWW-Authenticate": {
        "description": "The authentication scheme to use", "required": True, **_STRING}}),
    "403": ("Not allowed: the caller's role does not grant the role the operation needs "
            "(error.needed_role; the description names both), no role is bound to the "
            "caller, or a field names what the caller may not choose", {}),
    "404": ("No such record (or route)", {}),
    "409": ("Conflicts with what is stored: a different record exists, a named cluster, "
            "network, container manager or storage source does not, or an operation runs",
            {}),
    "413": ("The request body is larger than the server's max-body-size (default 1 MiB)", {}),
    "415": ("The request body is declared (Content-Type) as something other than JSON", {}),
    "431": ("The request head (request line and headers) is larger than 64 KiB", {}),
    "429": ("Too many failed authentications from this client or for this user",
            {"Retry-After": _RETRY_AFTER}),
    "503": ("Store, bus or token checker (kubeauth) unavailable", {"Retry-After": _RETRY_AFTER}),
    "504": ("A service did not answer in time", {}),
}


def _is_open(path: str, self_auths: list[str]) -> bool:
    """Self-auth paths are open to anyone, matched as the auth middleware does."""
    return self_auth_path(path) in {self_auth_path(p) for p in self_auths}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _needs(role: Role | None, open_path: bool) -> str:
    if role is None:
        return "Needs no role: open to anyone."
    needs = f"Needs the {role.value} role."
    if role is Role.REGISTRAR:
        needs += " The operator and admin roles include it."
    if open_path:
        needs += " Open without credentials here (self-auth); credentials sent are checked."
    return needs


def _operation(route: dict[str, Any], doc: dict[str, Any], open_path: bool) -> dict[str, Any]:
    names = [part.split("}")[0] for part in route["path"].split("{")[1:]]
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in names]
    params += [{"name": name, "in": "query", "required": False, "schema": schema}
               for name, schema in (doc.get("query") or {}).items()]
    op: dict[str, Any] = {"summary": doc["summary"], "tags": [route["tag"]], "responses": {},
                          "description": _needs(doc["role"], open_path)}
    if doc["role"] is not None:
        op["x-commissaire-role"] = doc["role"].value
    if doc.get("scope"):
        op["x-commissaire-scope"] = doc["scope"]
    if params:
        op["parameters"] = params
    if doc.get("body"):
        op["requestBody"] = {"required": doc.get("body_required", False),
                             "content": _json(doc["body"])}
    headers = {"X-Request-ID": _REQUEST_ID}
    for name, required in (doc.get("headers") or {}).items():
        headers[name] = {"required": required, **_STRING}
    for code, text in doc.get("ok", {"200": "OK"}).items():
        op["responses"][code] = {"description": text, "headers": dict(headers),
                                 "content": _json(doc.get("returns", {}))}
    for code, (text, extra) in _ERRORS.items():
        if code in op["responses"]:
            continue
        op["responses"][code] = {"description": text,
                                 "headers": {"X-Request-ID": _REQUEST_ID, **extra},
                                 "content": _json({"$ref": "#/components/schemas/Error"})}
    if open_path:
        # Open to anyone (--self-auth), credentials optional: sent, they are checked
        # like anywhere else (wrong is a 401) and may grant more (SelfRegister).
        op["security"] = [{}, {"basic": []}]
    return op


def build_document(routes: list[dict[str, Any]], self_auths: list[str] | None = None
                   ) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        open_path = _is_open(route["path"], self_auths or [])
        item: dict[str, Any] = {}
        for method, doc in route["methods"].items():
            op = _operation(route, doc, open_path)
            op["operationId"] = method.lower() + "".join(
                part.strip("{}").title() for part in route["path"].split("/")[3:])
            item[method.lower()] = op
        paths[route["path"]] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Commissaire", "version": __version__,
                 "description": (
                     "Agentless control plane for fleets of Linux hosts. Every request "
                     "needs HTTP basic credentials unless its path is configured as "
                     "self-auth, and a role that grants the one its operation needs "
                     "(x-commissaire-role): viewer < operator < admin; registrar only "
                     "registers hosts (operator and admin may too). Only the methods listed here are served: any other is a "
                     "405 whose Allow header lists the path's methods. Unknown query "
                     "parameters and unknown body fields are 400s; request bodies are "
                     "JSON objects, nested at most 32 levels, with finite numbers.")},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"basic": []}],
    }


class OpenAPI:
    def __init__(self, routes: list[dict[str, Any]], self_auths: list[str] | None = None) -> None:
        self.routes = routes
        self.self_auths = list(self_auths or [])
        self._document: dict[str, Any] | None = None

    @property
    def document(self) -> dict[str, Any]:
        # Built on first use: the route table is complete only after this is made.
        if self._document is None:
            self._document = build_document(self.routes, self.self_auths)
        return self._document

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
