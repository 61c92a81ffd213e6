"""The base class of every authentication plugin (seed chapter "Authentication
Plugins"): a module names its subclass `PluginClass`."""
from __future__ import annotations

import falcon

from commissaire.bus.clients import Caller
from commissaire.identity import Identity
from commissaire_http.authentication.roles import RoleResolver


class Authenticator:
    """Base of every authentication plugin.

    `authenticate(req)` answers with an Identity (who the caller is), True (the
    caller is admitted and named after the plugin, with the role configured for
    the plugin's entry) or False (nothing to say: the next plugin is tried), or
    raises a CommissaireError (400/403) for credentials it cannot use. A plugin
    written to the seed's contract, `authenticate(environ, start_response)`, is
    recognised when it is loaded and called with the WSGI environ.
    """

    #: Gives identities their roles; the server sets it when it loads the plugin.
    roles: RoleResolver = RoleResolver()
    #: The services' bus, for a plugin that verifies credentials through them (API
    #: tokens); the server sets it when it loads the plugin (None: no bus).
    bus: Caller | None = None

    def authenticate(self, req: falcon.Request) -> Identity | bool:
        raise NotImplementedError

    def identify(self, req: falcon.Request) -> Identity | bool:
        """What the server asks: by default, what `authenticate` answers. A plugin
        whose `authenticate` keeps answering True/False overrides this one."""
        return self.authenticate(req)

    def declares_roles(self) -> bool:
        """Whether the plugin's own configuration names roles (a users file's)."""
        return False

    def claimed_user(self, _req: falcon.Request) -> str | None:
        """The user name the request's credentials claim (unverified), for throttling."""
        return None

    def verified(self, _req: falcon.Request) -> bool:
        """True when these exact credentials were verified before and that is known
        at no cost (a cache hit). Such a request is admitted even when throttled."""
        return False
