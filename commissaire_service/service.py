"""Base of every service: an explicit registry of the methods it exposes.

Only registered methods can be called over the bus; anything else is
MethodNotFound. Parameters are bound before the call, so a bad call is
InvalidRequest and an error inside a method is never mistaken for one.
Services know nothing of kombu: the bus server calls `dispatch`.
"""
from __future__ import annotations

import inspect
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from commissaire import errors
from commissaire.models import utcnow

logger = logging.getLogger(__name__)


class Service:
    """A named service with exposed methods `<name>.<method>`."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._methods: dict[str, Callable[..., Any]] = {}
        self.started_at = utcnow()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.expose("ping", self.ping)

    @property
    def routing_keys(self) -> list[str]:
        """Keys of the queue all copies of this service share."""
        return [f"{self.name}.*"]

    @property
    def private_routing_keys(self) -> list[str]:
        """Keys of a queue of this copy alone (notifications every copy must see)."""
        return []

    def expose(self, method: str, function: Callable[..., Any]) -> None:
        self._methods[f"{self.name}.{method}"] = function

    def exposed(self) -> list[str]:
        return sorted(self._methods)

    def dispatch(self, method: str, params: dict[str, Any], context: dict[str, Any]) -> Any:
        function = self._methods.get(method)
        if function is None:
            raise errors.MethodNotFound(f"{self.name} exposes no method {method!r}")
        try:
            inspect.signature(function).bind(**params)
        except TypeError as exc:
            raise errors.InvalidRequest(f"bad parameters for {method}: {exc}") from None
        return function(**params)

    def ping(self) -> dict[str, Any]:
        """Liveness and a summary for GET /api/v0/status."""
        return {"service": self.name, "status": "ok", "instance": self.instance,
                "started_at": self.started_at, **self.health()}

    def health(self) -> dict[str, Any]:
        """Service-specific health facts; raise to report the service unhealthy."""
        return {}

    def stop(self) -> None:
        """Release what the service holds."""
