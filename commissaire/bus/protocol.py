"""JSON-RPC 2.0 messages as they travel on the bus (no transport knowledge).

A request made for an API caller carries it, as a top-level "actor" member beside
"id" (commissaire.identity.Identity.to_dict): who asked, for the record. A
service that does not look for it ignores it; a request without one is the
control plane's own (a watcher check, a resumed operation).
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict

from commissaire import errors
from commissaire.identity import Identity


class Request(TypedDict):
    """A request, or a notification when it has no id."""

    jsonrpc: Literal["2.0"]
    method: str
    params: Mapping[str, object]
    id: NotRequired[str]
    #: Who it is made for (Identity.to_dict), when an API caller asked.
    actor: NotRequired[dict[str, object]]


class Result(TypedDict):
    """The answer to a request that succeeded."""

    jsonrpc: Literal["2.0"]
    id: str
    result: object


class Error(TypedDict):
    """The answer to a request that failed."""

    jsonrpc: Literal["2.0"]
    id: str | None
    error: errors.JsonRpcError


def new_id() -> str:
    return uuid.uuid4().hex


def request(method: str, params: Mapping[str, object], request_id: str | None,
            actor: Identity | None = None) -> Request:
    """A request (with an id) or a notification (id None: nobody answers), made
    on behalf of `actor` when an API caller asked for it."""
    message: Request = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    if actor is not None:
        message["actor"] = actor.to_dict()
    return message


def result(request_id: str, value: object) -> Result:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id: str | None, exc: errors.CommissaireError) -> Error:
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.to_jsonrpc()}


def unwrap(response: object) -> object:
    """The result of a response, or the service's exception re-raised by class."""
    if not isinstance(response, dict):
        raise errors.CommissaireError("a service answered something that is not a "
                                      "JSON-RPC response")
    if "error" in response:
        raise errors.from_jsonrpc(response["error"])
    return response.get("result")


def parse_request(body: object) -> tuple[str, dict[str, object], str | None]:
    """(method, params, id) of a request; InvalidRequest if it is not one."""
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise errors.InvalidRequest("not a JSON-RPC 2.0 message")
    method = body.get("method")
    params = body.get("params", {})
    if not isinstance(method, str) or not isinstance(params, dict):
        raise errors.InvalidRequest("method must be a string and params an object")
    return method, params, body.get("id")


def parse_actor(body: object) -> Identity | None:
    """Who a request was made for (None: nobody named); InvalidRequest if the
    "actor" member is not an identity."""
    if not isinstance(body, dict) or body.get("actor") is None:
        return None
    actor = body["actor"]
    try:
        if not isinstance(actor, dict):
            raise TypeError("not an object")
        return Identity.from_dict(actor)
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.InvalidRequest(f"actor: not an identity ({type(exc).__name__})") from None
