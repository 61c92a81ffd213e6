"""Base of every service: the methods it exposes and the notifications it
handles, each declared on the method by a decorator.

Only methods marked `@bus_method` can be called over the bus (as
`<service>.<name>`); anything else is MethodNotFound. Parameters are bound
before the call, so a bad call is InvalidRequest and an error inside a method is
never mistaken for one. A method marked `@on_notification(key, ...)` handles
notifications with those routing keys: shared by every copy of the service
(one of them gets each), or private (every copy gets each). Services know
nothing of kombu: the bus server calls `dispatch`. While a method runs,
`current_actor()` is the API caller the call was made for (None: nobody named).
"""
from __future__ import annotations

import inspect
import logging
import os
import socket
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import ClassVar, TypeVar

from commissaire import errors
from commissaire.identity import Identity
from commissaire.models import utcnow

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., object])

_METHOD = "_commissaire_bus_method"  # the name it is called by
_ACTOR: ContextVar[Identity | None] = ContextVar("commissaire_actor", default=None)


def current_actor() -> Identity | None:
    """Who the call being served was made for: the API caller (for the record), or
    None for the control plane's own calls and callers that name nobody."""
    return _ACTOR.get()

_NOTIFICATION = "_commissaire_notification"  # (routing keys, private, pass_key)


def bus_method(name: str = "") -> Callable[[F], F]:
    """Expose the method over the bus as `<service>.<name>` (default: its own name)."""
    def mark(function: F) -> F:
        setattr(function, _METHOD, name or function.__name__)
        return function
    return mark


def on_notification(*keys: str, private: bool = False, pass_key: bool = False
                    ) -> Callable[[F], F]:
    """Handle notifications with these routing keys: called with the notification's
    params (and first the routing key itself, with `pass_key`). Private: every
    copy of the service gets each one, not just one of them."""
    def mark(function: F) -> F:
        setattr(function, _NOTIFICATION, (keys, private, pass_key))
        return function
    return mark


class Service:
    """A named service with exposed methods `<name>.<method>`."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._methods: dict[str, Callable[..., object]] = {}
        self._notifications: dict[str, tuple[Callable[..., object], bool, bool]] = {}
        self.started_at = utcnow()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        for method, attribute in self.bus_methods().items():
            self._methods[method] = getattr(self, attribute)
        for attribute, declared in self._declared():
            if hasattr(declared, _NOTIFICATION):
                keys, private, pass_key = getattr(declared, _NOTIFICATION)
                for key in keys:
                    self._notifications[key] = (getattr(self, attribute), private, pass_key)

    @classmethod
    def _declared(cls) -> list[tuple[str, Callable[..., object]]]:
        """The class's callable attributes (properties left out), by name."""
        found = []
        for attribute in dir(cls):
            declared = getattr(cls, attribute, None)
            if not isinstance(declared, property) and callable(declared):
                found.append((attribute, declared))
        return found

    @classmethod
    def bus_methods(cls) -> dict[str, str]:
        """What the class exposes: `<name>.<method>` -> the attribute that answers it.
        (commissaire.bus.clients has one client method for each.)"""
        return {f"{cls.name}.{getattr(declared, _METHOD)}": attribute
                for attribute, declared in cls._declared() if hasattr(declared, _METHOD)}

    @property
    def routing_keys(self) -> list[str]:
        """Keys of the queue all copies of this service share."""
        return [f"{self.name}.*", *(key for key, (_, private, _) in self._notifications.items()
                                    if not private)]

    @property
    def private_routing_keys(self) -> list[str]:
        """Keys of a queue of this copy alone (notifications every copy must see)."""
        return [key for key, (_, private, _) in self._notifications.items() if private]

    def exposed(self) -> list[str]:
        return sorted(self._methods)

    def dispatch(self, method: str, params: Mapping[str, object],
                 context: Mapping[str, object]) -> object:
        actor = context.get("actor")
        token = _ACTOR.set(actor if isinstance(actor, Identity) else None)
        try:
            return self._dispatch(method, params)
        finally:
            _ACTOR.reset(token)

    def _dispatch(self, method: str, params: Mapping[str, object]) -> object:
        handler = self._notifications.get(method)
        if handler is not None:
            notified, _private, pass_key = handler
            return notified(method, **params) if pass_key else notified(**params)
        function = self._methods.get(method)
        if function is None:
            raise errors.MethodNotFound(f"{self.name} exposes no method {method!r}")
        try:
            inspect.signature(function).bind(**params)
        except TypeError as exc:
            raise errors.InvalidRequest(f"bad parameters for {method}: {exc}") from None
        return function(**params)

    @bus_method()
    def ping(self) -> dict[str, object]:
        """Liveness and a summary for GET /api/v0/status."""
        return {"service": self.name, "status": "ok", "instance": self.instance,
                "started_at": self.started_at, **self.health()}

    def health(self) -> dict[str, object]:
        """Service-specific health facts; raise to report the service unhealthy."""
        return {}

    def stop(self) -> None:
        """Release what the service holds."""
