"""Loading authentication plugins from their configuration entries.

An entry is `{"name": module, ...options}`: the module's `PluginClass` (a subclass
of Authenticator) is built with the options as keyword arguments, except `role`,
which is the server's: the role of a caller the plugin admits with a plain True.
A plugin written to the seed's contract, `authenticate(environ, start_response)`,
is recognised once, here, from its signature; it is called with the request's
WSGI environ and a start_response that records nothing. Only True admits: a
WSGI answer of its own (a refusal) counts as nothing to say.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import falcon

from commissaire.bus.clients import Caller
from commissaire.config import ConfigError
from commissaire.identity import Identity, Role
from commissaire_http.authentication.base import Authenticator
from commissaire_http.authentication.roles import RoleResolver

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _ignore_response(_status: str, _headers: list[tuple[str, str]],
                     _exc_info: object = None) -> Any:
    """The start_response a seed-style plugin gets: its answer is not sent."""
    return lambda _data: None


def is_seed_style(plugin_class: type[Authenticator]) -> bool:
    """Whether `authenticate` takes (environ, start_response), as the seed's did."""
    try:
        params = list(inspect.signature(plugin_class.authenticate).parameters.values())
    except (TypeError, ValueError):
        return False
    return len([p for p in params[1:] if p.kind in _POSITIONAL]) == 2


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin and what the server adds to it."""

    authenticator: Authenticator
    module: str
    role: Role | None
    seed_style: bool

    def identify(self, req: falcon.Request) -> Identity | None:
        """Who the caller is; None when the plugin has nothing to say."""
        if self.seed_style:  # authenticate(environ, start_response), seen at load
            seed: Callable[..., object] = self.authenticator.authenticate
            answer: object = seed(req.env, _ignore_response)
        else:
            answer = self.authenticator.identify(req)
        if isinstance(answer, Identity):
            return answer
        if answer is True:
            return self.authenticator.roles.identity(self.module, f"plugin:{self.module}",
                                                     role=self.role)
        return None

    def declares_roles(self) -> bool:
        return self.role is not None or self.authenticator.declares_roles()

    def claimed_user(self, req: falcon.Request) -> str | None:
        return None if self.seed_style else self.authenticator.claimed_user(req)

    def verified(self, req: falcon.Request) -> bool:
        return not self.seed_style and self.authenticator.verified(req)


def _role_option(name: str, value: object) -> Role | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return Role(value)
    except ValueError:
        raise ConfigError(f"authentication plugin {name!r}: role {ascii(value)[:40]} is not "
                          f"a role (one of: {', '.join(r.value for r in Role)})") from None


def load_plugin(entry: dict[str, Any], roles: RoleResolver | None = None,
                bus: Caller | None = None) -> Plugin:
    name = entry["name"]
    options = {k: v for k, v in entry.items() if k not in ("name", "role")}
    role = _role_option(name, entry.get("role"))
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"authentication plugin {name!r} cannot be imported: {exc}") from None
    plugin_class = getattr(module, "PluginClass", None)
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, Authenticator)):
        raise ConfigError(f"authentication plugin {name!r} has no PluginClass "
                          "subclassing Authenticator")
    try:
        authenticator = plugin_class(**options)
    except TypeError as exc:
        raise ConfigError(f"authentication plugin {name!r}: bad options: {exc}") from None
    if roles is not None:
        authenticator.roles = roles
    if bus is not None:
        authenticator.bus = bus
    return Plugin(authenticator, name, role, is_seed_style(plugin_class))


def load_plugins(entries: Iterable[dict[str, Any]], roles: RoleResolver,
                 bus: Caller | None = None) -> list[Plugin]:
    return [load_plugin(entry, roles, bus) for entry in entries]
