"""Authentication plugins, run as one falcon middleware in the configured order.

A plugin is a module with `PluginClass`, a subclass of `Authenticator`, built with
the options of its configuration entry as keyword arguments (seed chapter on
authentication plugins). `authenticate(req)` returns True to admit the request,
False when it has nothing to say (the next plugin is tried), or raises a
CommissaireError (400/403) when the credentials it was given are unusable. With no
plugin configured every request is refused: an unconfigured server is closed.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

import falcon

from commissaire import errors
from commissaire.config import ConfigError

logger = logging.getLogger(__name__)

CHALLENGE = 'Basic realm="commissaire"'


class Authenticator:
    """Base of every authentication plugin."""

    def authenticate(self, req: falcon.Request) -> bool:
        raise NotImplementedError


def load_plugin(entry: dict[str, Any]) -> Authenticator:
    options = {k: v for k, v in entry.items() if k != "name"}
    name = entry["name"]
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"authentication plugin {name!r} cannot be imported: {exc}") from None
    plugin_class = getattr(module, "PluginClass", None)
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, Authenticator)):
        raise ConfigError(f"authentication plugin {name!r} has no PluginClass "
                          "subclassing Authenticator")
    try:
        return plugin_class(**options)
    except TypeError as exc:
        raise ConfigError(f"authentication plugin {name!r}: bad options: {exc}") from None


def _refusal() -> errors.AuthenticationRequired:
    exc = errors.AuthenticationRequired("authentication is required: send valid credentials")
    exc.headers = {"WWW-Authenticate": CHALLENGE}  # type: ignore[attr-defined]
    return exc


class AuthMiddleware:
    def __init__(self, plugins: list[Authenticator], self_auths: list[str]) -> None:
        self.plugins = plugins
        self.self_auths = [p.rstrip("/") or "/" for p in self_auths]

    def _skips(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.self_auths)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._skips(req.path):
            return
        first_error: errors.CommissaireError | None = None
        for plugin in self.plugins:
            try:
                if plugin.authenticate(req):
                    return
            except errors.CommissaireError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        raise _refusal()


def build_auth_middleware(plugins: list[dict[str, Any]], self_auths: list[str]) -> AuthMiddleware:
    loaded = [load_plugin(entry) for entry in plugins]
    if not loaded:
        logger.warning("no authentication plugin configured: every request will be refused")
    return AuthMiddleware(loaded, self_auths)
