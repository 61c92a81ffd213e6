"""A stand-in Kubernetes API server for tests: real HTTP(S) on 127.0.0.1.

No real API server can run on the test machines, so this one implements,
faithfully and nothing more, the part of the core/v1 and policy/v1 API that
Commissaire's container manager service uses:

- ``GET /api/v1/nodes`` (NodeList), ``POST /api/v1/nodes`` (201; 409
  AlreadyExists for an existing name; 422 Invalid for a name that is not a
  lowercase RFC 1123 subdomain; 400 for a body that is not a v1 Node).
- ``GET/PUT/PATCH/DELETE /api/v1/nodes/NAME``. Every change bumps one global
  resourceVersion counter (as etcd's revision does); a no-op update does not.
  PUT compares ``metadata.resourceVersion`` (a stale one is 409 Conflict, an
  absent one is an unconditional update, as nodes allow). PATCH takes
  ``application/merge-patch+json`` and ``application/strategic-merge-patch+json``,
  both applied as an RFC 7386 merge (exact for maps and scalars such as
  ``spec.unschedulable``; the strategic list-merge keys are not implemented),
  with ``metadata.resourceVersion`` in a patch as a precondition. PUT and PATCH
  of the node leave ``.status`` alone, as the status subresource split does.
  DELETE answers a Status of Success.
- ``GET /api/v1/pods`` and ``GET /api/v1/namespaces/NS/pods`` (PodList) with
  ``fieldSelector`` on ``spec.nodeName``, ``metadata.name``,
  ``metadata.namespace`` and ``status.phase`` (``=``, ``==``, ``!=``, comma
  for "and"; other fields are 400, as on a real server);
  ``GET/DELETE /api/v1/namespaces/NS/pods/NAME``.
- ``POST /api/v1/namespaces/NS/pods/NAME/eviction`` with a policy/v1 (or
  v1beta1) Eviction: 201 Status Success and the pod is deleted (at once, or
  after ``deletion_grace`` seconds during which it carries a
  ``deletionTimestamp``), 404 for no pod, 429 TooManyRequests with a
  DisruptionBudget cause while the test has the pod "blocked by a PDB".
- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (TokenReview, as
  pkg/registry/authentication/tokenreview answers it): 201 with the request's
  apiVersion, kind and spec echoed (the reviewed token included, as the real
  API does), ``metadata: {"creationTimestamp": null}`` and a status. A token a
  test registered (`add_token`) is ``{"authenticated": true, "user": {username,
  uid, groups, extra}, "audiences": [...]}``; the audiences are the
  intersection of ``spec.audiences`` (default: the stand-in's
  `api_audiences`) with the token's own (a token registered without audiences
  is audience-agnostic: all of them). An unknown token, or one whose audiences
  do not meet the requested ones, is ``{"user": {}, "error": "[invalid bearer
  token, ...]"}`` (``authenticated`` false is omitted, as Go's omitempty does).
  No ``spec.token``: 400 "token is required for TokenReview in
  authentication"; another kind or apiVersion: 400; other verbs 405. The caller
  needs its own credential like any request (a reviewed token is not one).
- Authentication: with a ``token``, every request needs ``Authorization:
  Bearer <token>`` or, over TLS, a client certificate signed by the stand-in's
  CA; otherwise 401 Unauthorized. Errors are ``Status`` objects shaped like
  Kubernetes' (kind, apiVersion, metadata, status, message, reason, details,
  code); unknown paths are 404 and unsupported verbs 405.

Not implemented: any other resource or API group (no PodDisruptionBudget
objects: a test blocks evictions directly), labelSelector (400), watches,
pagination (limit/continue), dry-run, server-side apply and JSON patch (415),
the status subresource endpoints, graceful deletion options, pod garbage
collection when a node is deleted, RBAC (a valid credential may do anything),
API discovery (/api, /apis, /version), RBAC on TokenReview (the real API wants
``create tokenreviews``, e.g. the system:auth-delegator cluster role).

Test hooks (thread-safe): `add_node`, `set_ready`, `touch_node` (a concurrent
writer), `add_pod`, `block_eviction`/`unblock_eviction`, `before` (run a
function before the next matching request, to stage a race), `refuse_patch`,
`deletion_grace`, `add_token`/`remove_token` (users TokenReview knows),
`review_answer` (answer TokenReviews with this instead: a hostile API), and
`requests` (what was asked, without headers or bodies).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.k8s_standin.tls import Pki, make_pki

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_FIELDS = {"spec.nodeName": ("spec", "nodeName"), "metadata.name": ("metadata", "name"),
           "metadata.namespace": ("metadata", "namespace"), "status.phase": ("status", "phase")}
TOKEN_REVIEW_VERSION = "authentication.k8s.io/v1"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid",
            429: "TooManyRequests"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_failure(code: int, message: str, reason: str = "",
                   details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Status object as the API server sends with an error."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message,
                            "reason": reason or _REASONS.get(code, ""), "code": code}
    if details:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ApiAnswer(Exception):
    """Raised by a handler to answer `code` with `body` (a Status or an object)."""

    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(code)
        self.code = code
        self.body = body


def _fail(code: int, message: str, reason: str = "",
          details: dict[str, Any] | None = None) -> ApiAnswer:
    return ApiAnswer(code, status_failure(code, message, reason, details))


@dataclass(frozen=True)
class TokenUser:
    """Who a registered token is, as an authenticator would say (user.Info)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] | None = None
    #: None: audience-agnostic (a static or legacy token), else the token's audiences.
    audiences: tuple[str, ...] | None = None


@dataclass
class _Hook:
    method: str
    path: str
    action: Callable[[], None]
    times: int


class KubeStandIn:
    """The state of a fake cluster and the HTTP server in front of it."""

    def __init__(self, token: str | None = "standin-token", tls: bool = False,
                 pki_dir: Path | None = None) -> None:
        """`token`: the bearer token to require (None: no authentication at all);
        `tls`: serve HTTPS with a throwaway CA (see `pki`), client certificates
        signed by it are accepted as credentials."""
        self.token = token
        self.tls = tls
        self.refuse_patch = False
        self.deletion_grace = 0.0
        self.requests: list[tuple[str, str]] = []
        #: What the API server's own audience is (--api-audiences).
        self.api_audiences = ["https://kubernetes.default.svc.cluster.local"]
        #: When set, (status, JSON value) every TokenReview is answered with.
        self.review_answer: tuple[int, Any] | None = None
        self._tokens: dict[str, TokenUser] = {}
        self._lock = threading.RLock()
        self._rv = 100
        self._nodes: dict[str, dict[str, Any]] = {}
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._blocked: dict[tuple[str, str], str] = {}
        self._hooks: list[_Hook] = []
        self._timers: list[threading.Timer] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.pki: Pki | None = None
        if tls:
            if pki_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="k8s-standin-")
                pki_dir = Path(self._tmp.name)
            self.pki = make_pki(pki_dir)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the stand-in first"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> KubeStandIn:
        context = None
        if self.pki is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
            context.load_verify_locations(self.pki.ca_cert)
            context.verify_mode = ssl.CERT_OPTIONAL
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self), context)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="k8s-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._httpd = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks -------------------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _new_meta(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "uid": str(uuid.uuid4()),
                                "creationTimestamp": _now()}
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    def add_node(self, name: str, ready: bool | None = True,
                 labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A node as a kubelet would have registered it; `ready=None`: no conditions."""
        with self._lock:
            meta = self._new_meta(name)
            meta["labels"] = dict(labels or {"kubernetes.io/hostname": name})
            node = {"kind": "Node", "apiVersion": "v1", "metadata": meta, "spec": {},
                    "status": {"conditions": []}}
            self._nodes[name] = node
            self._bump(node)
            if ready is not None:
                self.set_ready(name, ready)
            return copy.deepcopy(self._nodes[name])

    def set_ready(self, name: str, ready: bool | str) -> None:
        """Set the Ready condition: True/False, or "Unknown" (kubelet stopped posting)."""
        if isinstance(ready, bool):
            value = "True" if ready else "False"
        else:
            value = ready
        reason = {"True": "KubeletReady", "False": "KubeletNotReady"}.get(
            value, "NodeStatusUnknown")
        message = {"True": "kubelet is posting ready status",
                   "False": "container runtime network not ready"}.get(
            value, "Kubelet stopped posting node status.")
        with self._lock:
            node = self._nodes[name]
            conditions = [c for c in node["status"].get("conditions", [])
                          if c.get("type") != "Ready"]
            conditions.append({"type": "Ready", "status": value, "reason": reason,
                               "message": message, "lastHeartbeatTime": _now(),
                               "lastTransitionTime": _now()})
            node["status"]["conditions"] = conditions
            self._bump(node)

    def touch_node(self, name: str, label: str = "touched-by", value: str = "someone-else") -> None:
        """Another writer changes the node (a label), bumping its resourceVersion."""
        with self._lock:
            node = self._nodes[name]
            node["metadata"].setdefault("labels", {})[label] = value
            self._bump(node)

    def node(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._nodes.get(name)
            return copy.deepcopy(found) if found else None

    def add_pod(self, namespace: str, name: str, node: str, *, owner_kind: str | None = "ReplicaSet",
                mirror: bool = False, phase: str = "Running") -> dict[str, Any]:
        """A pod bound to `node`, owned by a controller of `owner_kind` (None: a bare pod);
        `mirror`: a static pod's mirror, as a kubelet creates it."""
        with self._lock:
            meta = self._new_meta(name, namespace)
            if owner_kind:
                meta["ownerReferences"] = [{
                    "apiVersion": "apps/v1", "kind": owner_kind, "name": f"{name}-owner",
                    "uid": str(uuid.uuid4()), "controller": True, "blockOwnerDeletion": True}]
            if mirror:
                meta["annotations"] = {"kubernetes.io/config.mirror": uuid.uuid4().hex,
                                       "kubernetes.io/config.source": "file"}
                meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node,
                                            "uid": self._nodes[node]["metadata"]["uid"]
                                            if node in self._nodes else str(uuid.uuid4()),
                                            "controller": True}]
            pod = {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
                   "spec": {"nodeName": node,
                            "containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
                   "status": {"phase": phase}}
            self._pods[(namespace, name)] = pod
            self._bump(pod)
            return copy.deepcopy(pod)

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._pods.get((namespace, name))
            return copy.deepcopy(found) if found else None

    def pods_on(self, node: str) -> list[str]:
        with self._lock:
            return sorted(f"{ns}/{n}" for (ns, n), p in self._pods.items()
                          if p["spec"].get("nodeName") == node)

    def block_eviction(self, namespace: str, name: str, pdb: str = "standin-pdb") -> None:
        """From now on, evicting this pod answers 429 as a PodDisruptionBudget would."""
        with self._lock:
            self._blocked[(namespace, name)] = pdb

    def unblock_eviction(self, namespace: str, name: str) -> None:
        with self._lock:
            self._blocked.pop((namespace, name), None)

    def add_token(self, token: str, username: str, groups: tuple[str, ...] | list[str] = (),
                  *, uid: str = "", extra: dict[str, list[str]] | None = None,
                  audiences: tuple[str, ...] | list[str] | None = None) -> None:
        """From now on TokenReview says `token` is this user."""
        with self._lock:
            self._tokens[token] = TokenUser(username, uid or str(uuid.uuid4()), tuple(groups),
                                            extra, None if audiences is None
                                            else tuple(audiences))

    def remove_token(self, token: str) -> None:
        """Revoke: TokenReview no longer knows `token`."""
        with self._lock:
            self._tokens.pop(token, None)

    def before(self, method: str, path: str, action: Callable[[], None], times: int = 1) -> None:
        """Run `action` before handling the next `times` requests `method path`."""
        with self._lock:
            self._hooks.append(_Hook(method.upper(), path, action, times))

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p.split("?")[0] == path)

    # -- the API ---------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes,
               client_cert: bool) -> tuple[int, Any]:
        """Answer one request: (HTTP status, JSON body)."""
        parts = urlsplit(target)
        path = parts.path
        with self._lock:
            self.requests.append((method, target))
            hooks = [h for h in self._hooks if h.method == method and h.path == path]
            for hook in hooks:
                hook.times -= 1
                if hook.times <= 0:
                    self._hooks.remove(hook)
        for hook in hooks:
            hook.action()
        try:
            self._authenticate(headers, client_cert)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with self._lock:
                return self._route(method, path, query, headers, body)
        except ApiAnswer as answer:
            return answer.code, answer.body

    def _authenticate(self, headers: dict[str, str], client_cert: bool) -> None:
        if self.token is None or client_cert:
            return
        if headers.get("authorization", "") != f"Bearer {self.token}":
            raise _fail(401, "Unauthorized")

    def _route(self, method: str, path: str, query: dict[str, str],
               headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if path.rstrip("/") == TOKEN_REVIEWS:
            if method != "POST":
                raise _fail(405, "the server does not allow this method on the requested "
                                 "resource")
            return self._token_review(body)
        if segments[:2] != ["api", "v1"]:
            raise _fail(404, "the server could not find the requested resource")
        rest = segments[2:]
        routes: list[tuple[list[str], dict[str, Callable[..., tuple[int, dict[str, Any]]]]]] = [
            (["nodes"], {"GET": self._list_nodes, "POST": self._create_node}),
            (["nodes", "*"], {"GET": self._get_node, "PUT": self._replace_node,
                              "PATCH": self._patch_node, "DELETE": self._delete_node}),
            (["pods"], {"GET": self._list_pods}),
            (["namespaces", "*", "pods"], {"GET": self._list_pods}),
            (["namespaces", "*", "pods", "*"], {"GET": self._get_pod,
                                                "DELETE": self._delete_pod_request}),
            (["namespaces", "*", "pods", "*", "eviction"], {"POST": self._evict}),
        ]
        for pattern, verbs in routes:
            if len(pattern) == len(rest) and all(p in ("*", s) for p, s in zip(pattern, rest,
                                                                                 strict=True)):
                handler = verbs.get(method)
                if handler is None:
                    raise _fail(405, "the server does not allow this method on the requested "
                                     "resource")
                args = [s for p, s in zip(pattern, rest, strict=True) if p == "*"]
                return handler(*args, query=query, headers=headers, body=body)
        raise _fail(404, "the server could not find the requested resource")

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError as exc:
            raise _fail(400, f"the body of the request could not be decoded: {exc}") from None

    def _list(self, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        shown = []
        for item in items:
            item = copy.deepcopy(item)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            shown.append(item)
        return {"kind": f"{kind}List", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._rv)}, "items": shown}

    # tokenreviews

    def _token_review(self, body: bytes) -> tuple[int, Any]:
        if self.review_answer is not None:
            return self.review_answer
        obj = self._json(body)
        if not isinstance(obj, dict) or obj.get("kind") != "TokenReview" \
                or obj.get("apiVersion") != TOKEN_REVIEW_VERSION:
            raise _fail(400, f"the object provided is unrecognized (expected a "
                             f"{TOKEN_REVIEW_VERSION} TokenReview)")
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise _fail(400, "token is required for TokenReview in authentication")
        requested = spec.get("audiences") or []
        if not isinstance(requested, list) or not all(isinstance(a, str) for a in requested):
            raise _fail(400, "spec.audiences must be a list of strings")
        wanted = requested or list(self.api_audiences)
        user = self._tokens.get(token)
        status: dict[str, Any] = {"user": {}}
        if user is None:
            status["error"] = "[invalid bearer token, token lookup failed]"
        else:
            audiences = [a for a in wanted if user.audiences is None or a in user.audiences]
            if not audiences:
                status["error"] = (f"[invalid bearer token, token audiences "
                                   f"{json.dumps(list(user.audiences or ()))} is invalid "
                                   f"for the target audiences {json.dumps(wanted)}]")
            else:
                info: dict[str, Any] = {"username": user.username}
                if user.uid:
                    info["uid"] = user.uid
                if user.groups:
                    info["groups"] = list(user.groups)
                if user.extra:
                    info["extra"] = copy.deepcopy(user.extra)
                status = {"authenticated": True, "user": info, "audiences": audiences}
        return 201, {"kind": "TokenReview", "apiVersion": TOKEN_REVIEW_VERSION,
                     "metadata": {"creationTimestamp": None}, "spec": copy.deepcopy(spec),
                     "status": status}

    # nodes

    def _node_or_404(self, name: str) -> dict[str, Any]:
        node = self._nodes.get(name)
        if node is None:
            raise _fail(404, f'nodes "{name}" not found', details={"name": name,
                                                                   "kind": "nodes"})
        return node

    def _list_nodes(self, *, query: dict[str, str], **_: Any) -> tuple[int, dict[str, Any]]:
        if query.get("labelSelector") or query.get("fieldSelector"):
            raise _fail(400, "selectors on nodes are not implemented by the stand-in")
        return 200, self._list("Node", [self._nodes[n] for n in sorted(self._nodes)])

    def _create_node(self, *, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        obj = self._json(body)
        if not isinstance(obj, dict) or obj.get("kind", "Node") != "Node" \
                or obj.get("apiVersion", "v1") != "v1":
            raise _fail(400, "the object provided is unrecognized (expected a v1 Node)")
        name = (obj.get("metadata") or {}).get("name") or ""
        if not _SUBDOMAIN.match(name) or len(name) > 253:
            raise _fail(422, f'Node "{name}" is invalid: metadata.name: Invalid value: '
                             f'"{name}": a lowercase RFC 1123 subdomain must consist of lower '
                             "case alphanumeric characters, '-' or '.', and must start and end "
                             "with an alphanumeric character",
                        details={"name": name, "kind": "Node"})
        if name in self._nodes:
            raise _fail(409, f'nodes "{name}" already exists', "AlreadyExists",
                        {"name": name, "kind": "nodes"})
        meta = self._new_meta(name)
        meta["labels"] = dict((obj.get("metadata") or {}).get("labels") or {})
        node = {"kind": "Node", "apiVersion": "v1", "metadata": meta,
                "spec": dict(obj.get("spec") or {}), "status": dict(obj.get("status") or {})}
        self._nodes[name] = node
        self._bump(node)
        return 201, copy.deepcopy(node)

    def _get_node(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        return 200, copy.deepcopy(self._node_or_404(name))

    def _conflict(self, name: str) -> ApiAnswer:
        return _fail(409, f'Operation cannot be fulfilled on nodes "{name}": the object has '
                          "been modified; please apply your changes to the latest version and "
                          "try again", "Conflict", {"name": name, "kind": "nodes"})

    def _store_node(self, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Keep what a client cannot change; write (and bump) only on a real change."""
        new["kind"], new["apiVersion"] = "Node", "v1"
        new["status"] = copy.deepcopy(current.get("status", {}))
        meta = new.setdefault("metadata", {})
        for field in ("name", "uid", "creationTimestamp"):
            meta[field] = current["metadata"][field]
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        new.setdefault("spec", {})
        if new != current:
            self._bump(new)
            self._nodes[meta["name"]] = new
        return copy.deepcopy(self._nodes[meta["name"]])

    def _replace_node(self, name: str, *, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        obj = self._json(body)
        if not isinstance(obj, dict) or obj.get("kind", "Node") != "Node":
            raise _fail(400, "the object provided is unrecognized (expected a v1 Node)")
        given = (obj.get("metadata") or {}).get("name")
        if given != name:
            raise _fail(400, f"the name of the object ({given}) does not match the name on "
                             f"the URL ({name})")
        current = self._node_or_404(name)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            raise self._conflict(name)
        return 200, self._store_node(current, copy.deepcopy(obj))

    def _patch_node(self, name: str, *, headers: dict[str, str], body: bytes,
                    **_: Any) -> tuple[int, dict[str, Any]]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if self.refuse_patch or content_type not in _MERGE_TYPES:
            accepted = "none" if self.refuse_patch else ", ".join(_MERGE_TYPES)
            raise _fail(415, "the body of the request was in an unknown format - accepted "
                             f"media types include: {accepted}")
        patch = self._json(body)
        if not isinstance(patch, dict):
            raise _fail(400, "a merge patch of a Node must be a JSON object")
        current = self._node_or_404(name)
        version = (patch.get("metadata") or {}).get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            raise self._conflict(name)
        return 200, self._store_node(current, merge_patch(copy.deepcopy(current), patch))

    def _delete_node(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        node = self._node_or_404(name)
        del self._nodes[name]
        self._rv += 1
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "kind": "nodes",
                                 "uid": node["metadata"]["uid"]}}

    # pods

    def _list_pods(self, namespace: str | None = None, *, query: dict[str, str],
                   **_: Any) -> tuple[int, dict[str, Any]]:
        if query.get("labelSelector"):
            raise _fail(400, "labelSelector is not implemented by the stand-in")
        tests = []
        for term in filter(None, (query.get("fieldSelector") or "").split(",")):
            match = re.match(r"^([^=!]+)(==|!=|=)(.*)$", term)
            if not match or match.group(1) not in _FIELDS:
                field = match.group(1) if match else term
                raise _fail(400, f'"{field}" is not a known field selector: only '
                                 '"metadata.name", "metadata.namespace", "spec.nodeName", '
                                 '"status.phase"')
            tests.append((_FIELDS[match.group(1)], match.group(2) != "!=", match.group(3)))
        items = []
        for (ns, _name), pod in sorted(self._pods.items()):
            if namespace is not None and ns != namespace:
                continue
            if all(((pod.get(a) or {}).get(b, "") == value) == equal
                   for (a, b), equal, value in tests):
                items.append(pod)
        return 200, self._list("Pod", items)

    def _pod_or_404(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self._pods.get((namespace, name))
        if pod is None:
            raise _fail(404, f'pods "{name}" not found', details={"name": name, "kind": "pods"})
        return pod

    def _get_pod(self, namespace: str, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        return 200, copy.deepcopy(self._pod_or_404(namespace, name))

    def _delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self._pod_or_404(namespace, name)
        if self.deletion_grace <= 0:
            del self._pods[(namespace, name)]
            self._rv += 1
            return pod
        if not pod["metadata"].get("deletionTimestamp"):
            pod["metadata"]["deletionTimestamp"] = _now()
            pod["metadata"]["deletionGracePeriodSeconds"] = int(self.deletion_grace)
            self._bump(pod)
            uid = pod["metadata"]["uid"]

            def remove() -> None:
                with self._lock:
                    current = self._pods.get((namespace, name))
                    if current is not None and current["metadata"]["uid"] == uid:
                        del self._pods[(namespace, name)]
                        self._rv += 1

            timer = threading.Timer(self.deletion_grace, remove)
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        return pod

    def _delete_pod_request(self, namespace: str, name: str,
                            **_: Any) -> tuple[int, dict[str, Any]]:
        return 200, copy.deepcopy(self._delete_pod(namespace, name))

    def _evict(self, namespace: str, name: str, *, body: bytes,
               **_: Any) -> tuple[int, dict[str, Any]]:
        obj = self._json(body)
        if not isinstance(obj, dict) or obj.get("kind") != "Eviction" \
                or obj.get("apiVersion") not in ("policy/v1", "policy/v1beta1"):
            raise _fail(400, "the object provided is unrecognized (expected a policy/v1 "
                             "Eviction)")
        meta = obj.get("metadata") or {}
        if meta.get("name") != name:
            raise _fail(400, "name in URL does not match name in Eviction object")
        if meta.get("namespace") not in (None, "", namespace):
            raise _fail(400, "the namespace of the provided object does not match the "
                             "namespace sent on the request")
        self._pod_or_404(namespace, name)
        pdb = self._blocked.get((namespace, name))
        if pdb is not None:
            raise _fail(429, "Cannot evict pod as it would violate the pod's disruption "
                             "budget.", details={"causes": [{
                                 "reason": "DisruptionBudget",
                                 "message": f"The disruption budget {pdb} needs 1 healthy "
                                            "pods and has 1 currently"}]})
        self._delete_pod(namespace, name)
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Success", "code": 201}


class _Server(ThreadingHTTPServer):
    """Handshakes TLS in the connection's own thread; can drop live connections."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext | None) -> None:
        self.context = context
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        with self.live_lock:
            self.live.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self.live_lock:
            self.live.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.live_lock:
            live, self.live = list(self.live), set()
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up or fails the TLS handshake is not our failure


def _make_handler(standin: KubeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "k8s-standin/1"
        disable_nagle_algorithm = True
        timeout = 30

        def setup(self) -> None:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.settimeout(self.timeout)
                self.request.do_handshake()
            super().setup()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            client_cert = isinstance(self.connection, ssl.SSLSocket) \
                and bool(self.connection.getpeercert())
            code, answer = standin.handle(self.command, self.path, headers, body, client_cert)
            data = json.dumps(answer).encode()
            self.send_response(code, HTTPStatus(code).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
