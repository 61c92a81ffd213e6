"""The falcon application: every route in one table, errors mapped in one place."""
from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import falcon

from commissaire import errors
from commissaire.config import ServerConfig
from commissaire.identity import Role
from commissaire.models import (
    ApiToken,
    Cluster,
    ClusterDeploy,
    ClusterOperation,
    ClusterRestart,
    ClusterUpgrade,
    ContainerManagerConfig,
    Host,
    Model,
    Network,
)
from commissaire_http.activity import ActivityRecorder
from commissaire_http.authentication import build_auth_middleware
from commissaire_http.authorization import (
    SCOPE_BODY,
    SCOPE_CLUSTER,
    SCOPE_HOST,
    SCOPE_HOSTS_QUERY,
    SCOPE_UNSCOPED,
    RoleCheck,
    ScopeCheck,
    caller,
)
from commissaire_http.limits import BodyLimit
from commissaire_http.resources import (
    clusters,
    events,
    hosts,
    openapi,
    records,
    shapes,
    status,
    tokens,
)
from commissaire_http.resources.base import Bus

logger = logging.getLogger(__name__)

API = "/api/v0"
OPENAPI_PATH = f"{API}/openapi.json"


def routes(bus: Bus, config: ServerConfig) -> list[dict[str, Any]]:
    """The whole API, top to bottom: path, resource, and what each method does.

    A method's `body` is the JSON schema the server validates the request body with
    (the models' own `input_schema`), `query` the schemas of its query parameters,
    `returns` the shape of a success body, `role` the role a caller needs (None:
    anyone, for the API's own description), `scope` what a caller scoped to
    clusters may reach through it (authorization.ScopeCheck; none: not limited):
    the OpenAPI document is built from this table, so it says what the server checks.
    """
    def op(model: type[ClusterOperation]) -> dict[str, Any]:
        progress = shapes.operation(model.done_list)
        if model is ClusterDeploy:
            progress = {**progress, "properties": {**progress["properties"],
                                                   "version": {"type": "string"}}}
        return {
            "GET": {"summary": f"Progress of the cluster's {model.operation}",
                    "returns": progress, "role": Role.VIEWER, "scope": SCOPE_CLUSTER},
            "PUT": {"summary": f"Start a {model.operation} (409 while one runs)",
                    "role": Role.OPERATOR, "body": model.input_schema, "returns": progress,
                    "body_required": bool(model.input_schema.get("required")),
                    "ok": {"201": "Started"}, "scope": SCOPE_CLUSTER},
            "DELETE": {"summary": f"Abort the running {model.operation} (its progress "
                       "stays readable, status aborted)", "returns": progress,
                       "role": Role.OPERATOR, "scope": SCOPE_CLUSTER},
        }

    def named(model: type[Model], what: str, shape: dict[str, Any]) -> dict[str, Any]:
        """Clusters, networks and container managers: changed by admins only (networks
        and container managers, shared by every cluster, by unscoped ones only)."""
        scope = SCOPE_CLUSTER if model is Cluster else SCOPE_UNSCOPED
        return {
            "GET": {"summary": f"Get a {what}", "returns": shape, "role": Role.VIEWER,
                    **({"scope": scope} if model is Cluster else {})},
            "PUT": {"summary": f"Create a {what} (identical re-PUT: 200; different: 409)",
                    "role": Role.ADMIN, "body": model.input_schema, "returns": shape,
                    "body_required": bool(model.input_schema.get("required")),
                    "ok": {"201": "Created", "200": "Already exists"}, "scope": scope},
            "DELETE": {"summary": f"Delete a {what}", "returns": {}, "role": Role.ADMIN,
                       "scope": scope},
        }

    host_list = hosts.Hosts(bus, config.page_limit)
    event_list = events.Events(bus, ActivityRecorder(bus, config.trusted_proxies),
                               config.page_limit)
    table = [
        {"path": f"{API}/status", "tag": "status", "resource": status.Status(bus),
         "methods": {"GET": {"summary": "Health of server, bus, store and services",
                             "returns": shapes.STATUS, "role": Role.VIEWER,
                             # The health document, also when the essentials are down.
                             "ok": {"200": "Serving", "503": "Bus, storage or store down"}}}},
        {"path": f"{API}/hosts", "tag": "hosts", "resource": host_list,
         "methods": {"GET": {"summary": "List hosts (filter and page)",
                             "query": host_list.query, "returns": shapes.HOSTS,
                             "role": Role.VIEWER, "scope": SCOPE_HOSTS_QUERY,
                             "headers": {"X-Total-Count": True, "Link": False}}}},
        {"path": f"{API}/host", "tag": "hosts",
         "resource": hosts.SelfRegister(bus, config.trusted_proxies),
         "methods": {"PUT": {"summary": "A host registers itself (address from the connection)",
                             "role": Role.REGISTRAR, "scope": SCOPE_BODY,
                             "body": hosts.SELF_REGISTER_SCHEMA, "body_required": True,
                             "returns": shapes.HOST,
                             "ok": {"201": "Created", "200": "Already exists"}}}},
        {"path": f"{API}/host/{{address}}", "tag": "hosts", "resource": hosts.HostRecord(bus),
         "methods": {"GET": {"summary": "Get a host", "returns": shapes.HOST,
                             "role": Role.VIEWER, "scope": SCOPE_HOST},
                     "PUT": {"summary": "Create a host", "body": Host.input_schema,
                             "role": Role.OPERATOR, "scope": SCOPE_BODY,
                             "body_required": True, "returns": shapes.HOST,
                             "ok": {"201": "Created", "200": "Already exists"}},
                     "DELETE": {"summary": "Delete a host (leaves its cluster)", "returns": {},
                                "role": Role.OPERATOR, "scope": SCOPE_HOST}}},
        {"path": f"{API}/host/{{address}}/creds", "tag": "hosts",
         "resource": hosts.HostCreds(bus),
         "methods": {"GET": {"summary": "The host's SSH credentials",
                             "returns": shapes.CREDS, "role": Role.ADMIN,
                             "scope": SCOPE_HOST}}},
        {"path": f"{API}/host/{{address}}/status", "tag": "hosts",
         "resource": hosts.HostStatus(bus),
         "methods": {"GET": {"summary": "Host and container manager status",
                             "returns": shapes.HOST_STATUS, "role": Role.VIEWER,
                             "scope": SCOPE_HOST}}},
        {"path": f"{API}/clusters", "tag": "clusters",
         "resource": records.RecordNames(bus, Cluster),
         "methods": {"GET": {"summary": "Names of all clusters", "returns": shapes.NAMES,
                             "role": Role.VIEWER}}},
        {"path": f"{API}/cluster/{{name}}", "tag": "clusters",
         "resource": records.Record(bus, Cluster), "methods": named(Cluster, "cluster", shapes.CLUSTER)},
        {"path": f"{API}/cluster/{{name}}/hosts", "tag": "clusters",
         "resource": clusters.ClusterMembers(bus),
         "methods": {"GET": {"summary": "Member addresses", "returns": shapes.NAMES,
                             "role": Role.VIEWER, "scope": SCOPE_CLUSTER},
                     "PUT": {"summary": "Replace members if 'old' is current (else 409)",
                             "role": Role.OPERATOR, "scope": SCOPE_CLUSTER,
                             "body": clusters.MEMBERS_SCHEMA, "body_required": True,
                             "returns": shapes.NAMES}}},
        {"path": f"{API}/cluster/{{name}}/hosts/{{address}}", "tag": "clusters",
         "resource": clusters.ClusterMember(bus),
         "methods": {"GET": {"summary": "Membership test (200 or 404)", "returns": shapes.NAMES,
                             "role": Role.VIEWER, "scope": SCOPE_CLUSTER},
                     "PUT": {"summary": "Add a host (idempotent)", "returns": shapes.NAMES,
                             "role": Role.OPERATOR, "scope": SCOPE_CLUSTER},
                     "DELETE": {"summary": "Remove a host (idempotent)", "returns": shapes.NAMES,
                                "role": Role.OPERATOR, "scope": SCOPE_CLUSTER}}},
        {"path": f"{API}/cluster/{{name}}/restart", "tag": "operations",
         "resource": clusters.ClusterOperationResource(bus, ClusterRestart),
         "methods": op(ClusterRestart)},
        {"path": f"{API}/cluster/{{name}}/upgrade", "tag": "operations",
         "resource": clusters.ClusterOperationResource(bus, ClusterUpgrade),
         "methods": op(ClusterUpgrade)},
        {"path": f"{API}/cluster/{{name}}/deploy", "tag": "operations",
         "resource": clusters.ClusterOperationResource(bus, ClusterDeploy),
         "methods": op(ClusterDeploy)},
        {"path": f"{API}/networks", "tag": "networks",
         "resource": records.RecordNames(bus, Network),
         "methods": {"GET": {"summary": "Names of all networks", "returns": shapes.NAMES,
                             "role": Role.VIEWER}}},
        {"path": f"{API}/network/{{name}}", "tag": "networks",
         "resource": records.Record(bus, Network), "methods": named(Network, "network", shapes.NETWORK)},
        {"path": f"{API}/containermanagers", "tag": "containermanagers",
         "resource": records.RecordNames(bus, ContainerManagerConfig),
         "methods": {"GET": {"summary": "Names of all container managers", "returns": shapes.NAMES,
                             "role": Role.VIEWER}}},
        {"path": f"{API}/containermanager/{{name}}", "tag": "containermanagers",
         "resource": records.Record(bus, ContainerManagerConfig),
         "methods": named(ContainerManagerConfig, "container manager",
                          shapes.CONTAINER_MANAGER)},
    ]
    table += [
        {"path": f"{API}/tokens", "tag": "tokens", "resource": tokens.Tokens(bus),
         "methods": {"GET": {"summary": "Every API token (no secret)", "returns": shapes.TOKENS,
                             "role": Role.ADMIN, "scope": SCOPE_UNSCOPED}}},
        {"path": f"{API}/token/{{name}}", "tag": "tokens", "resource": tokens.Token(bus),
         "methods": {"GET": {"summary": "Get an API token (no secret)", "returns": shapes.TOKEN,
                             "role": Role.ADMIN, "scope": SCOPE_UNSCOPED},
                     "PUT": {"summary": "Create an API token: the answer's `token` is shown "
                             "this once (a name in use: 409)", "role": Role.ADMIN,
                             "scope": SCOPE_UNSCOPED, "body": ApiToken.input_schema,
                             "body_required": True, "returns": shapes.TOKEN_CREATED,
                             "ok": {"201": "Created"}},
                     "DELETE": {"summary": "Revoke an API token (refused from its next use)",
                                "returns": {}, "role": Role.ADMIN,
                                "scope": SCOPE_UNSCOPED}}},
    ]
    table.append({"path": f"{API}/events", "tag": "events", "resource": event_list,
                  "methods": {"GET": {"summary": "The activity stream: every change and "
                                      "operation step (filter and page; newest first)",
                                      "query": event_list.query, "returns": shapes.EVENTS,
                                      "headers": {"X-Total-Count": True, "Link": False},
                                      "role": Role.VIEWER}}})
    table.append({"path": OPENAPI_PATH, "tag": "meta",
                  "resource": openapi.OpenAPI(table, open_paths(config)),
                  "methods": {"GET": {"summary": "This document",
                                      "returns": {"type": "object"}, "role": None}}})
    return table


def open_paths(config: ServerConfig) -> list[str]:
    """Paths served without credentials: the configured self-auth paths, and the
    OpenAPI document (it describes the API, holds no record, and clients and
    tools such as schemathesis read it before they have credentials)."""
    return [*config.self_auths, OPENAPI_PATH]


class StrictQuery:
    """Query parameters an operation does not take are a 400 naming them.

    /hosts parses its own (filters and paging); every other operation takes none.
    """

    def __init__(self, table: list[dict[str, Any]]) -> None:
        self.allowed = {(route["path"], method): set(doc.get("query") or ())
                        for route in table for method, doc in route["methods"].items()}

    def process_resource(self, req: falcon.Request, _resp: falcon.Response,
                         _resource: Any, _params: dict[str, Any]) -> None:
        allowed = self.allowed.get((req.uri_template or "", req.method))
        if allowed is None:  # no route, or a method falcon answers itself (405, OPTIONS)
            return
        for name in req.params:
            if name not in allowed:
                raise errors.ValidationError(
                    "is not a known parameter; allowed: " + (", ".join(sorted(allowed)) or "none"),
                    field=name[:64])


_REQUEST_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class RequestId:
    """A request id that follows the request from the API through the bus into services."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID") or ""
        # ASCII only: str.isalnum() is true for "²" and "é", which would be echoed
        # into a header, the bus and every log line.
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        req.context.request_id = rid
        resp.set_header("X-Request-ID", rid)


def _handle_commissaire_error(req: falcon.Request, resp: falcon.Response,
                              exc: errors.CommissaireError, _params: dict[str, Any]) -> None:
    if exc.http_status >= 500 and exc.http_status not in (503, 504):
        logger.error("request %s %s by %s failed: %s", req.method,
                     req.uri_template or ascii(req.path), caller(req), exc.description)
    resp.status = falcon.code_to_http_status(exc.http_status)
    resp.media = exc.to_http_body()
    for name, value in exc.response_headers().items():
        resp.set_header(name, value)


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception,
                       params: dict[str, Any]) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc
    logger.exception("request %s %s by %s failed unexpectedly", req.method,
                     req.uri_template or ascii(req.path), caller(req))
    _handle_commissaire_error(req, resp, errors.CommissaireError(
        "the server failed unexpectedly; see its log (request id "
        f"{req.context.get('request_id', '?')})"), params)


def _serialize_http_error(req: falcon.Request, resp: falcon.Response,
                          exc: falcon.HTTPError) -> None:
    """falcon's own errors (unknown route, wrong method) in our JSON shape."""
    resp.content_type = falcon.MEDIA_JSON
    description = exc.description or exc.title
    if exc.status_code == 405 and not exc.description:
        allowed = dict(exc.headers or {}).get("Allow", "")
        description = f"{req.method} is not served on {req.path}; it serves: {allowed}"
    resp.media = {"error": {"code": exc.status_code, "title": exc.title,
                            "description": description}}


def create_app(config: ServerConfig, bus: Bus) -> falcon.App:
    middleware: list[Any] = [
        RequestId(),
        BodyLimit(config.max_body_size),
        build_auth_middleware(config.authentication_plugins, open_paths(config),
                              config.trusted_proxies, config.auth_failure_limit,
                              config.auth_failure_window, config.bindings(), bus),
    ]
    table = routes(bus, config)
    # Roles before query checks: a caller may not learn what it may not do.
    middleware += [RoleCheck(table), ScopeCheck(table, bus), StrictQuery(table)]
    # Every change request becomes an activity entry. Second in the list, its
    # process_response runs after the auth and limit middleware's (falcon runs them
    # in reverse), for refusals too, and sees the final answer.
    recorder: ActivityRecorder = next(r["resource"].recorder for r in table
                                      if isinstance(r["resource"], events.Events))
    recorder.routes(table)
    middleware.insert(1, recorder)
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    for route in table:
        app.add_route(route["path"], route["resource"])
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(errors.CommissaireError, _handle_commissaire_error)
    app.set_error_serializer(_serialize_http_error)
    return app
