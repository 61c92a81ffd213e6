"""What every resource shares: reading JSON bodies and calling services."""
from __future__ import annotations

import json
from typing import Any, Protocol

import falcon

from commissaire import errors


class Bus(Protocol):
    """The part of the bus client resources use (commissaire.bus.BusClient)."""

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None) -> Any: ...


def read_json(req: falcon.Request) -> Any:
    """The request body as JSON; None when there is no body."""
    raw = req.bounded_stream.read()
    if not raw or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadJSON(f"the request body is not valid JSON: {exc}") from None


def respond(resp: falcon.Response, body: Any, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.media = body


class Resource:
    """A REST resource with the bus it calls."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def call(self, req: falcon.Request, method: str, **params: Any) -> Any:
        return self.bus.call(method, params, request_id=req.context.get("request_id"))

    def created_or_ok(self, resp: falcon.Response, outcome: dict[str, Any]) -> None:
        """201 for a new record, 200 for an identical re-PUT."""
        respond(resp, outcome["record"], falcon.HTTP_201 if outcome["created"] else falcon.HTTP_200)
