"""Every change request answered by the API becomes an entry of the activity stream.

A falcon middleware: for each request whose method is not GET, HEAD or OPTIONS
(refusals included: 400, 401, 403, 404, 405, 409, ...) it names the action and
the object from the route and the method, the fields from the request body (the
resources keep what they parsed in `req.context.body`; every secret masked by
commissaire.activity.redact), the caller, the client's address (trusted proxies
honoured) and request id, and the outcome. The entry's JSON line is logged at
once; the entry is then handed to a background thread that stores it through
the storage service, so a slow or absent bus never delays or fails a request
(an entry that cannot be stored is still in the log). GET /api/v0/events waits
briefly for this process's pending entries before reading (read your writes).
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import queue
import re
import threading
import time
from typing import Any

import falcon

from commissaire import activity, errors
from commissaire.activity import Event
from commissaire.bus.clients import Caller, StorageClient
from commissaire_http.clientaddress import ClientAddress

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # entries waiting to be stored; beyond, an entry is only logged
SEND_TIMEOUT = 5.0  # seconds one entry may take to be stored
_READS = ("GET", "HEAD", "OPTIONS")
_OPERATIONS = ("restart", "upgrade", "deploy")
_KEY_MAX = 256


def _compile(template: str) -> re.Pattern[str]:
    """A route template as a regular expression with its fields as groups."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                      for i, part in enumerate(parts))
    return re.compile(pattern)


def describe_target(template: str, method: str, params: dict[str, str]
                    ) -> tuple[str, str, str, dict[str, Any]]:
    """(action, object kind, object key, extra fields) of a change request on a route."""
    segments = template.split("/")[3:]  # after /api/v0
    kind = segments[0] if segments else ""
    key = params.get("address") or params.get("name") or ""
    generic = {"PUT": "create", "DELETE": "delete"}.get(method, "request")
    if kind == "cluster" and len(segments) == 3 and segments[2] == "hosts":
        return ("update" if method == "PUT" else "request"), "cluster", f"{key}/hosts", {}
    if kind == "cluster" and len(segments) == 4:  # cluster/{name}/hosts/{address}
        name, address = params.get("name", ""), params.get("address", "")
        action = {"PUT": "associate", "DELETE": "disassociate"}.get(method, "request")
        return action, "cluster", f"{name}/hosts/{address}", {"host": address}
    if kind == "token" and method == "DELETE":
        return "revoke", kind, key, {}
    if kind == "cluster" and len(segments) == 3 and segments[2] in _OPERATIONS:
        action = {"PUT": "start", "DELETE": "abort"}.get(method, "request")
        return action, "cluster", f"{key}/{segments[2]}", {}
    return generic, kind, key, {}


def _basic_user(req: falcon.Request) -> str | None:
    """The user name of verified basic credentials (no Identity on the request)."""
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user or None


def actor_of(req: falcon.Request) -> dict[str, Any]:
    """Who made the request: its Identity (name and how they authenticated) when
    authentication left one, anonymous otherwise."""
    identity = getattr(req.context, "identity", None)
    if identity is not None:
        return {"name": str(getattr(identity, "name", "")),
                "method": str(getattr(identity, "method", ""))}
    if req.context.get("authenticated", False):
        user = _basic_user(req)
        if user is not None:
            return {"name": user[:_KEY_MAX], "method": "basic"}
        return {"name": "authenticated", "method": "unknown"}
    return dict(activity.ANONYMOUS)


def _error_of(resp: falcon.Response) -> str:
    media = resp.media if isinstance(resp.media, dict) else {}
    error = media.get("error")
    if isinstance(error, dict):
        return str(error.get("description") or error.get("title") or "")
    return ""


class ActivityRecorder:
    """The middleware; `routes(table)` tells it the API's route templates."""

    def __init__(self, bus: Caller, trusted_proxies: list[str]) -> None:
        self.bus = bus
        self.client_address = ClientAddress(trusted_proxies)
        self._routes: list[tuple[re.Pattern[str], str]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._queue: queue.Queue[Event] = queue.Queue(QUEUE_SIZE)
        self._worker_pid = 0

    def routes(self, table: list[dict[str, Any]]) -> None:
        self._routes = [(_compile(route["path"]), route["path"]) for route in table]

    # -- the middleware ---------------------------------------------------------

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _succeeded: bool) -> None:
        if req.method in _READS:
            return
        try:
            event = self.entry(req, resp)
        except Exception:  # recording must never fail the request
            logger.exception("could not make the activity entry of %s %s", req.method, req.path)
            return
        activity.log(event)
        self._submit(event)

    def entry(self, req: falcon.Request, resp: falcon.Response) -> Event:
        """The entry describing this answered request."""
        source = self.client_address(req)
        body = req.context.get("body")
        fields: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
        template, params = self._match(req.path)
        extra: dict[str, Any]
        if template is None:
            action, kind, key, extra = "request", "path", req.path[:_KEY_MAX], {}
        else:
            action, kind, key, extra = describe_target(template, req.method, params)
        status = resp.status_code
        if template is not None and template.split("/")[3:] == ["host"]:
            # Self-registration: the address the host got (or asked for, or came from).
            answered = resp.media if isinstance(resp.media, dict) else {}
            key = str(answered.get("address") or fields.get("address") or source)
        return activity.make(action, kind, key[:_KEY_MAX], actor=actor_of(req), source=source,
                             request_id=str(req.context.get("request_id", "")),
                             fields={**fields, **extra}, status=status, error=_error_of(resp))

    def _match(self, path: str) -> tuple[str | None, dict[str, str]]:
        for pattern, template in self._routes:
            found = pattern.fullmatch(path)
            if found:
                return template, found.groupdict()
        return None, {}

    # -- storing, in the background ------------------------------------------------

    def _submit(self, event: Event) -> None:
        self._ensure_worker()
        with self._lock:
            self._pending += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            logger.warning("activity entry %s not stored (%d entries waiting): it is "
                           "only in the log", event.id, QUEUE_SIZE)
            self._done()

    def _ensure_worker(self) -> None:
        """One storing thread per process (started in the worker, after any fork)."""
        with self._lock:
            if self._worker_pid == os.getpid():
                return
            self._worker_pid = os.getpid()
            self._queue = queue.Queue(QUEUE_SIZE)
            self._pending = 0
        threading.Thread(target=self._store_forever, name="activity-recorder",
                         daemon=True).start()

    def _store_forever(self) -> None:
        while True:
            event = self._queue.get()
            try:
                StorageClient(self.bus, request_id=event.request_id or None,
                              timeout=SEND_TIMEOUT).record_event(event)
            except errors.CommissaireError as exc:
                logger.warning("activity entry %s not stored (only in the log): %s",
                               event.id, exc.description)
            except Exception:
                logger.exception("activity entry %s not stored (only in the log)", event.id)
            finally:
                self._done()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self._idle.notify_all()

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait (at most `timeout` s) until this process's entries are stored or given up."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True


__all__ = ["ActivityRecorder", "actor_of", "describe_target"]
