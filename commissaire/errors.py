"""One exception hierarchy for the whole product.

Each class carries its JSON-RPC error code (used on the bus) and its HTTP status
(used by the REST server), so an error raised in a service travels over the bus
as a JSON-RPC error object, is re-raised as the same class on the caller's side,
and is turned into an HTTP response in exactly one place.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, TypedDict

# Registry of error classes by name, so the bus client can re-raise the class
# the service raised.
_REGISTRY: dict[str, type[CommissaireError]] = {}

#: The `data` of a JSON-RPC error object: which class, and its description and details.
ErrorData = TypedDict("ErrorData", {"class": str, "description": str,
                                    "details": dict[str, object]})


class JsonRpcError(TypedDict):
    """A JSON-RPC 2.0 error object as a service sends it."""

    code: int
    message: str
    data: ErrorData


class CommissaireError(Exception):
    """Base of every error the product raises on purpose."""

    jsonrpc_code = -32000
    http_status = 500
    title = "Internal error"
    #: headers every HTTP answer of this class carries (a 401's challenge, a 503's
    #: Retry-After), declared here once rather than added where it is raised
    http_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, description: str = "", **details: object) -> None:
        super().__init__(description or self.title)
        self.description = description or self.title
        # Extra, JSON-serializable facts about the error (e.g. the field name).
        self.details = details

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def to_jsonrpc(self) -> JsonRpcError:
        """The JSON-RPC 2.0 error object for this error."""
        return {
            "code": self.jsonrpc_code,
            "message": self.title,
            "data": {
                "class": type(self).__name__,
                "description": self.description,
                "details": self.details,
            },
        }

    def response_headers(self) -> dict[str, str]:
        """The headers of this error's HTTP answer."""
        return dict(self.http_headers)

    def to_http_body(self) -> dict[str, dict[str, object]]:
        """The JSON body the REST API answers with."""
        error: dict[str, object] = {
            "code": self.http_status,
            "title": self.title,
            "description": self.description,
        }
        error.update(self.details)
        return {"error": error}


_REGISTRY[CommissaireError.__name__] = CommissaireError


class ValidationError(CommissaireError):
    """The input is malformed: names the field and says why."""

    jsonrpc_code = -32602
    http_status = 400
    title = "Invalid input"

    def __init__(self, description: str, field: str | None = None, **details: object) -> None:
        if field is not None:
            details["field"] = field
            description = f"{field}: {description}"
        super().__init__(description, **details)

    @property
    def field(self) -> str | None:
        field = self.details.get("field")
        return field if isinstance(field, str) else None


class BadJSON(ValidationError):
    """The request body is not JSON."""

    title = "Malformed JSON"


class AuthenticationRequired(CommissaireError):
    """No credentials, or credentials that do not check out."""

    jsonrpc_code = -32010
    http_status = 401
    title = "Authentication required"
    http_headers = {"WWW-Authenticate": 'Basic realm="commissaire"'}  # RFC 9110: every 401


class InvalidToken(AuthenticationRequired):
    """An API token that does not admit its bearer: malformed, unknown, revoked or
    expired, told apart to no one."""

    http_headers = {"WWW-Authenticate": 'Bearer realm="commissaire", error="invalid_token"'}


class Forbidden(CommissaireError):
    """Authenticated, but not allowed to do this."""

    jsonrpc_code = -32011
    http_status = 403
    title = "Forbidden"


class NotFound(CommissaireError):
    """The record does not exist."""

    jsonrpc_code = -32004
    http_status = 404
    title = "Not found"


class MethodNotAllowed(CommissaireError):
    jsonrpc_code = -32005
    http_status = 405
    title = "Method not allowed"


class Conflict(CommissaireError):
    """The request conflicts with what is stored (or ran into a concurrent change)."""

    jsonrpc_code = -32009
    http_status = 409
    title = "Conflict"


class StaleRecord(Conflict):
    """An update names an incarnation (`uid`) of a record that is gone: the record
    was deleted, and perhaps created again, since the caller read it."""

    title = "Stale record"


class LeaseLost(Conflict):
    """The caller no longer holds the lock it names (its lease expired, or another
    copy took the lock over): it must stop acting for that lock. Told apart from
    other conflicts by its class, never by its message."""

    title = "Lease lost"


class OperationStopped(Conflict):
    """A rolling operation is no longer in process (aborted, failed or finished):
    no new host may start."""

    title = "Operation stopped"


class PayloadTooLarge(CommissaireError):
    """The request body is larger than the server accepts (max-body-size)."""

    jsonrpc_code = -32013
    http_status = 413
    title = "Payload too large"


class UnsupportedMediaType(CommissaireError):
    """The request body is declared as something other than JSON."""

    jsonrpc_code = -32015
    http_status = 415
    title = "Unsupported media type"


class HeaderTooLarge(CommissaireError):
    """The request head (request line and headers) is larger than the server reads."""

    jsonrpc_code = -32014
    http_status = 431
    title = "Request header fields too large"


class TooManyRequests(CommissaireError):
    """Too many failed authentications from this client (or for this user name).

    `retry_after` (whole seconds) is sent as the Retry-After header."""

    jsonrpc_code = -32029
    http_status = 429
    title = "Too many requests"

    def __init__(self, description: str = "", retry_after: int = 1, **details: object) -> None:
        super().__init__(description, **details)
        self.retry_after = max(1, int(retry_after))

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class StoreUnavailable(CommissaireError):
    """The store cannot be reached or refused the operation."""

    jsonrpc_code = -32030
    http_status = 503
    title = "Store unavailable"
    http_headers = {"Retry-After": "5"}


class SecretsUnavailable(StoreUnavailable):
    """Stored secrets cannot be decrypted or encrypted (missing or wrong key)."""

    title = "Secrets unavailable"


class BusUnavailable(CommissaireError):
    """The message bus cannot be reached."""

    jsonrpc_code = -32031
    http_status = 503
    title = "Message bus unavailable"
    http_headers = {"Retry-After": "5"}


class AuthenticationUnavailable(CommissaireError):
    """The service that checks credentials (Kubernetes TokenReview) cannot answer:
    nothing was checked, so no failure is counted against the caller."""

    jsonrpc_code = -32012
    http_status = 503
    title = "Authentication unavailable"
    http_headers = {"Retry-After": "5"}


class ServiceTimeout(CommissaireError):
    """A service did not answer in time."""

    jsonrpc_code = -32032
    http_status = 504
    title = "Service did not answer in time"


class MethodNotFound(CommissaireError):
    """A bus call named a method the service does not expose (a bug)."""

    jsonrpc_code = -32601
    http_status = 500
    title = "Method not found"


class InvalidRequest(CommissaireError):
    """A bus message that is not a JSON-RPC 2.0 request (a bug)."""

    jsonrpc_code = -32600
    http_status = 500
    title = "Invalid request"


class ContainerManagerError(CommissaireError):
    """The container manager refused or failed a call."""

    jsonrpc_code = -32040
    http_status = 502
    title = "Container manager error"


def from_jsonrpc(error: object) -> CommissaireError:
    """Rebuild the exception a service raised from its JSON-RPC error object (anything
    not shaped as one is a plain CommissaireError)."""
    error = _object(error)
    data = _object(error.get("data"))
    name = data.get("class", "")
    cls = _REGISTRY.get(name, CommissaireError) if isinstance(name, str) else CommissaireError
    exc = cls.__new__(cls)
    description = data.get("description") or error.get("message", "")
    CommissaireError.__init__(exc, description if isinstance(description, str) else "",
                              **_object(data.get("details")))
    return exc


def _object(value: object) -> dict[str, object]:
    """A JSON object of a received error, or {} for anything else."""
    return value if isinstance(value, dict) else {}
