"""What every resource shares: reading JSON bodies and calling services."""
from __future__ import annotations

import re
from typing import Any, TypeVar

import falcon

from commissaire import errors, validation
from commissaire.bus.clients import Caller as Bus
from commissaire.bus.clients import Created, StorageClient
from commissaire.models import Model

M = TypeVar("M", bound=Model)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                            and media.endswith("+json"))


def read_json(req: falcon.Request) -> dict[str, Any] | None:
    """The request body, a JSON object; None when there is no body.

    Every body of this API is an object: anything else (JSON `null` included) is a
    400, and so are NaN/Infinity and nesting deeper than validation.MAX_DEPTH.

    A body declared as anything but JSON is a 415: the seed asks clients for
    application/json, and the types a browser may send cross-site without asking
    (forms, text/plain) thereby never reach a handler. No Content-Type is taken as
    JSON (scripts that omit it).
    """
    raw = req.bounded_stream.read()
    if not raw:  # no body; anything else, white space included, must be JSON
        return None
    if not _is_json(req.content_type):
        raise errors.UnsupportedMediaType(
            "Content-Type: the request body must be application/json")
    body = validation.loads(raw)
    if not isinstance(body, dict):
        raise errors.ValidationError("the request body must be a JSON object")
    req.context.body = body  # what the activity entry records (secrets masked there)
    return body


_DIGITS = re.compile(r"[0-9]{1,12}")


def parse_query(req: falcon.Request, spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The query parameters, checked against `spec` (name -> JSON schema): unknown or
    repeated parameters and bad values are 400s naming the parameter.

    Integers are ASCII digits only: `str.isdigit()` and `int()` take "²" and "٣".
    """
    values: dict[str, Any] = {}
    for name, raw in req.params.items():
        if name not in spec:
            allowed = ", ".join(sorted(spec)) or "none"
            raise errors.ValidationError(f"is not a known parameter; allowed: {allowed}",
                                         field=name[:64])
        if not isinstance(raw, str):
            raise errors.ValidationError("must be given once", field=name)
        if spec[name].get("type") == "integer":
            if not _DIGITS.fullmatch(raw):
                raise errors.ValidationError("must be a whole number (digits 0-9)", field=name)
            values[name] = int(raw)
        else:
            values[name] = raw
    validation.check_schema({"type": "object", "properties": spec}, values)
    return values


def respond(resp: falcon.Response, body: Any, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.media = body


class Resource:
    """A REST resource with the bus it calls."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def storage(self, req: falcon.Request) -> StorageClient:
        """The storage service, called under the request's id (log correlation)
        and on behalf of its caller (the record of who did what)."""
        return StorageClient(self.bus, request_id=req.context.get("request_id"),
                             actor=req.context.get("identity"))

    def created_or_ok(self, resp: falcon.Response, outcome: Created[M]) -> None:
        """201 for a new record, 200 for an identical re-PUT."""
        respond(resp, outcome.record.to_safe_dict(),
                falcon.HTTP_201 if outcome.created else falcon.HTTP_200)
