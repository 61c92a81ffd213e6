"""Authentication plugins, run as one falcon middleware in the configured order.

A plugin is a module with `PluginClass`, a subclass of `Authenticator` (base.py),
loaded from its configuration entry (plugins.py). It answers who the caller is,
an Identity with a role (roles.py), or that it has nothing to say (the next plugin
is tried), or raises a CommissaireError (400/403) when the credentials it was
given are unusable. With no plugin configured every request is refused: an
unconfigured server is closed. `req.context.identity` is the caller (None for an
anonymous request on a self-auth path); what its role may do is checked after
routing (commissaire_http.authorization).

Failed authentications are throttled per client address and user name (see
throttle.py): a throttled client gets 429 with Retry-After before any costly
check runs, so guessing costs the server nothing. Credentials a plugin already
verified (`verified(req)`: a costless cache hit of the exact credentials) are
admitted even from a throttled address: a guesser cannot get a hit without the
password, and one bad client must not lock out its neighbours. Self-auth paths
match exactly (one trailing slash aside, as the router strips) and are open to
anyone without credentials; a request there that sends credentials has them
checked like anywhere else (bad ones are a 401, not a quiet downgrade).
`req.context.authenticated` tells a resource which it got: an anonymous
self-registration may not choose its cluster or address (hosts.SelfRegister).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import falcon

from commissaire import errors
from commissaire.bus.clients import Caller
from commissaire.identity import Identity
from commissaire.rolebindings import RoleBindings
from commissaire_http.authentication.base import Authenticator
from commissaire_http.authentication.plugins import Plugin, load_plugins
from commissaire_http.authentication.roles import NO_ROLES_CONFIGURED, NoRoleBound, RoleResolver
from commissaire_http.authentication.throttle import FailureThrottle
from commissaire_http.clientaddress import ClientAddress

__all__ = ["AuthMiddleware", "Authenticator", "NoRoleBound", "announce_roles",
           "build_auth_middleware", "self_auth_path"]

logger = logging.getLogger(__name__)


def _refusal() -> errors.AuthenticationRequired:
    return errors.AuthenticationRequired("authentication is required: send valid credentials")


def self_auth_path(path: str) -> str:
    """A configured self-auth path without one trailing slash, as falcon's
    strip_url_path_trailing_slash gives req.path. rstrip("/") would also open
    /api/v0/host// , which the router gives to /api/v0/host/{address}."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


class AuthMiddleware:
    def __init__(self, plugins: list[Plugin], self_auths: list[str],
                 throttle: FailureThrottle | None = None,
                 client_address: ClientAddress | None = None,
                 roles: RoleResolver | None = None) -> None:
        self.plugins = plugins
        self.roles = roles or RoleResolver()
        # Exact paths only: a prefix would also open every path below it
        # (e.g. /api/v0/host would open /api/v0/host/{address}/creds).
        self.self_auths = frozenset(self_auth_path(p) for p in self_auths)
        self.throttle = throttle or FailureThrottle()
        self.client_address = client_address or ClientAddress([])

    def _skips(self, path: str) -> bool:
        # req.path as the router sees it: falcon already stripped one trailing slash
        # (app.py turns that on); stripping again here would open more than it routes.
        return path in self.self_auths

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        req.context.authenticated = False
        req.context.identity = None
        if self._skips(req.path) and req.get_header("Authorization") is None:
            # Anonymous on a self-auth path. A client certificate (no header) is
            # still worth checking: it lets the resource grant what anonymity may not.
            req.context.identity = self._identify_quietly(req)
            req.context.authenticated = req.context.identity is not None
            return
        req.context.identity = self._authenticate(req)
        req.context.authenticated = True

    def _identify_quietly(self, req: falcon.Request) -> Identity | None:
        """Who a plugin says this header-less request is; refusals are not errors
        here (the path is open) and count as no failure."""
        for plugin in self.plugins:
            try:
                identity = plugin.identify(req)
            except errors.CommissaireError:
                continue
            if identity is not None:
                return identity
        return None

    def _authenticate(self, req: falcon.Request) -> Identity:
        """Who the caller is, or raise 401/403/429."""
        # A cache hit of credentials verified before costs nothing and cannot be
        # had without the password: admit it even when the address is throttled.
        for plugin in self.plugins:
            if plugin.verified(req):
                identity = plugin.identify(req)  # the same cache hit
                if identity is not None:
                    return identity
        address = self.client_address(req)
        claimed = {u for u in (p.claimed_user(req) for p in self.plugins) if u is not None}
        wait = self.throttle.retry_after(address, claimed)
        # (H2) A request without credentials guesses nothing: it gets the 401 challenge
        # even from a throttled address (schemathesis: a missing Authorization is a 401).
        if wait > 0 and req.get_header("Authorization") is not None:
            raise errors.TooManyRequests(
                "too many failed authentications from this client (or for this user "
                f"name); retry in {math.ceil(wait)} s", retry_after=math.ceil(wait))
        first_error: errors.CommissaireError | None = None
        for plugin in self.plugins:
            try:
                identity = plugin.identify(req)
                if identity is not None:
                    self.throttle.success(address, claimed)
                    return identity
            except errors.TooManyRequests:
                raise  # busy (no check slot): nothing was checked, no failure counted
            except NoRoleBound:
                # Good credentials, no role: a refusal, not a failed guess.
                self.throttle.success(address, claimed)
                raise
            except errors.CommissaireError as exc:
                first_error = first_error or exc
        # Only requests that tried credentials count: a request without any is
        # how many clients start (and gets the challenge). Nor does one whose check
        # could not be made (AuthenticationUnavailable: the checker is down).
        unchecked = isinstance(first_error, errors.AuthenticationUnavailable)
        if not unchecked and (first_error is not None
                              or req.get_header("Authorization") is not None):
            self.throttle.failure(address, claimed)
        if first_error is not None:
            raise first_error
        raise _refusal()


def build_auth_middleware(plugins: list[dict[str, Any]], self_auths: list[str],
                          trusted_proxies: list[str] | None = None,
                          failure_limit: int = 10, failure_window: float = 60.0,
                          role_bindings: RoleBindings | None = None,
                          bus: Caller | None = None) -> AuthMiddleware:
    """`bus`: handed to the plugins that verify credentials through the services."""
    loaded: list[Plugin] = []
    roles = RoleResolver(role_bindings, lambda: any(p.declares_roles() for p in loaded))
    loaded += load_plugins(plugins, roles, bus)
    if not loaded:
        logger.warning("no authentication plugin configured: every request will be refused")
    return AuthMiddleware(loaded, self_auths, FailureThrottle(failure_limit, failure_window),
                          ClientAddress(trusted_proxies or []), roles)


def announce_roles(middleware: AuthMiddleware) -> None:
    """Say once, at start, when no role is configured anywhere (today's behaviour)."""
    if middleware.plugins and not middleware.roles.configured():
        logger.warning(NO_ROLES_CONFIGURED)
