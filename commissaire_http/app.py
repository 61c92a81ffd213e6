"""The falcon application: every route in one table, errors mapped in one place."""
from __future__ import annotations

import logging
import uuid
from typing import Any

import falcon

from commissaire import errors
from commissaire.config import ServerConfig
from commissaire.models import (
    Cluster,
    ClusterDeploy,
    ClusterRestart,
    ClusterUpgrade,
    ContainerManagerConfig,
    Host,
    Network,
)
from commissaire_http.authentication import build_auth_middleware
from commissaire_http.resources import clusters, hosts, openapi, records, status
from commissaire_http.resources.base import Bus

logger = logging.getLogger(__name__)

API = "/api/v0"


def _schema(model: type[Any]) -> dict[str, Any]:
    return dict(model.input_schema)


def routes(bus: Bus, config: ServerConfig) -> list[dict[str, Any]]:
    """The whole API, top to bottom: path, resource, and what each method does."""
    def op(model: type[Any]) -> dict[str, Any]:
        return {
            "GET": {"summary": f"Progress of the cluster's {model.operation}"},
            "PUT": {"summary": f"Start a {model.operation} (409 while one runs)",
                    "body": _schema(model), "ok": {"201": "Started"}},
            "DELETE": {"summary": f"Abort the running {model.operation}"},
        }

    def named(model: type[Any], what: str) -> dict[str, Any]:
        return {
            "GET": {"summary": f"Get a {what}"},
            "PUT": {"summary": f"Create a {what} (identical re-PUT: 200; different: 409)",
                    "body": _schema(model), "ok": {"201": "Created", "200": "Already exists"}},
            "DELETE": {"summary": f"Delete a {what}"},
        }

    table = [
        {"path": f"{API}/status", "tag": "status", "resource": status.Status(bus),
         "methods": {"GET": {"summary": "Health of server, bus, store and services"}}},
        {"path": f"{API}/hosts", "tag": "hosts",
         "resource": hosts.Hosts(bus, config.page_limit),
         "methods": {"GET": {"summary": "List hosts (filter and page)",
                             "query": ["cluster", "status", "limit", "offset"]}}},
        {"path": f"{API}/host", "tag": "hosts",
         "resource": hosts.SelfRegister(bus, config.trusted_proxies),
         "methods": {"PUT": {"summary": "A host registers itself (address from the connection)",
                             "body": _schema(Host), "ok": {"201": "Created"}}}},
        {"path": f"{API}/host/{{address}}", "tag": "hosts", "resource": hosts.HostRecord(bus),
         "methods": {"GET": {"summary": "Get a host"},
                     "PUT": {"summary": "Create a host", "body": _schema(Host),
                             "body_required": True,
                             "ok": {"201": "Created", "200": "Already exists"}},
                     "DELETE": {"summary": "Delete a host (leaves its cluster)"}}},
        {"path": f"{API}/host/{{address}}/creds", "tag": "hosts",
         "resource": hosts.HostCreds(bus),
         "methods": {"GET": {"summary": "The host's SSH credentials"}}},
        {"path": f"{API}/host/{{address}}/status", "tag": "hosts",
         "resource": hosts.HostStatus(bus),
         "methods": {"GET": {"summary": "Host and container manager status"}}},
        {"path": f"{API}/clusters", "tag": "clusters",
         "resource": records.RecordNames(bus, Cluster),
         "methods": {"GET": {"summary": "Names of all clusters"}}},
        {"path": f"{API}/cluster/{{name}}", "tag": "clusters",
         "resource": records.Record(bus, Cluster), "methods": named(Cluster, "cluster")},
        {"path": f"{API}/cluster/{{name}}/hosts", "tag": "clusters",
         "resource": clusters.ClusterMembers(bus),
         "methods": {"GET": {"summary": "Member addresses"},
                     "PUT": {"summary": "Replace members if 'old' is current (else 409)",
                             "body": {"type": "object", "required": ["old", "new"]}}}},
        {"path": f"{API}/cluster/{{name}}/hosts/{{address}}", "tag": "clusters",
         "resource": clusters.ClusterMember(bus),
         "methods": {"GET": {"summary": "Membership test (200 or 404)"},
                     "PUT": {"summary": "Add a host (idempotent)"},
                     "DELETE": {"summary": "Remove a host (idempotent)"}}},
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
         "methods": {"GET": {"summary": "Names of all networks"}}},
        {"path": f"{API}/network/{{name}}", "tag": "networks",
         "resource": records.Record(bus, Network), "methods": named(Network, "network")},
        {"path": f"{API}/containermanagers", "tag": "containermanagers",
         "resource": records.RecordNames(bus, ContainerManagerConfig),
         "methods": {"GET": {"summary": "Names of all container managers"}}},
        {"path": f"{API}/containermanager/{{name}}", "tag": "containermanagers",
         "resource": records.Record(bus, ContainerManagerConfig),
         "methods": named(ContainerManagerConfig, "container manager")},
    ]
    table.append({"path": f"{API}/openapi.json", "tag": "meta",
                  "resource": openapi.OpenAPI(table),
                  "methods": {"GET": {"summary": "This document"}}})
    return table


class RequestId:
    """A request id that follows the request from the API through the bus into services."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID") or ""
        rid = given if given.isalnum() and len(given) <= 64 else uuid.uuid4().hex
        req.context.request_id = rid
        resp.set_header("X-Request-ID", rid)


def _handle_commissaire_error(req: falcon.Request, resp: falcon.Response,
                              exc: errors.CommissaireError, params: dict[str, Any]) -> None:
    if exc.http_status >= 500 and exc.http_status not in (503, 504):
        logger.error("request %s %s failed: %s", req.method, req.path, exc.description)
    resp.status = falcon.code_to_http_status(exc.http_status)
    resp.media = exc.to_http_body()
    for name, value in getattr(exc, "headers", {}).items():
        resp.set_header(name, value)
    if exc.http_status == 503:
        resp.set_header("Retry-After", "5")


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception,
                       params: dict[str, Any]) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc
    logger.exception("request %s %s failed unexpectedly", req.method, req.path)
    _handle_commissaire_error(req, resp, errors.CommissaireError(
        "the server failed unexpectedly; see its log (request id "
        f"{req.context.get('request_id', '?')})"), params)


def _serialize_http_error(req: falcon.Request, resp: falcon.Response,
                          exc: falcon.HTTPError) -> None:
    """falcon's own errors (unknown route, wrong method) in our JSON shape."""
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"error": {"code": exc.status_code, "title": exc.title,
                            "description": exc.description or exc.title}}


def create_app(config: ServerConfig, bus: Bus) -> falcon.App:
    middleware: list[Any] = [
        RequestId(),
        build_auth_middleware(config.authentication_plugins, config.self_auths),
    ]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    for route in routes(bus, config):
        app.add_route(route["path"], route["resource"])
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(errors.CommissaireError, _handle_commissaire_error)
    app.set_error_serializer(_serialize_http_error)
    return app
