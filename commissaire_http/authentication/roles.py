"""From who a plugin says the caller is to an Identity with its role.

The role is, in order: the one the plugin names (a users-file entry's `role`, a
plugin entry's `role` option), the one bound to the caller's name, groups or
certificate in `role-bindings` (commissaire.rolebindings). Where no role is
configured anywhere (no binding, no users-file role, no plugin role), every
authenticated caller keeps today's powers (UNBOUND_ROLE); once one is, a caller
with none is refused (NoRoleBound, a 403).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from commissaire import errors
from commissaire.identity import UNBOUND_ROLE, Identity, Role
from commissaire.rolebindings import RoleBindings
from commissaire_http.authorization import describe_caller

logger = logging.getLogger(__name__)

NO_ROLES_CONFIGURED = "no roles configured: every authenticated caller is admin (as before)"


class NoRoleBound(errors.Forbidden):
    """Authenticated, but roles are configured and none is bound to this caller."""


def _nothing_declared() -> bool:
    return False


class RoleResolver:
    """Shared by the loaded plugins: `declared` tells whether any of them names
    roles itself (asked only for a caller nothing binds, so a users file that
    gains a role is taken into account at once)."""

    def __init__(self, bindings: RoleBindings | None = None,
                 declared: Callable[[], bool] = _nothing_declared) -> None:
        self.bindings = bindings or RoleBindings()
        self.declared = declared

    def configured(self) -> bool:
        return self.bindings.configured or self.declared()

    def identity(self, name: str, method: str, *, role: Role | None = None,
                 groups: tuple[str, ...] = (), clusters: tuple[str, ...] = ()) -> Identity:
        """The caller with its role; NoRoleBound when roles are configured and
        none applies to it."""
        bound = role or self.bindings.lookup(name, method, groups)
        if bound is None:
            if self.configured():
                logger.info("%s refused: no role is bound to it", describe_caller(name, method))
                raise NoRoleBound(f"no role is bound to this caller ({method} "
                                  f"authentication): ask an administrator for one")
            bound = UNBOUND_ROLE
        return Identity(name=name, method=method, role=bound, groups=groups,
                        clusters=clusters)
