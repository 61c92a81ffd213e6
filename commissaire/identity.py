"""Who a caller is, and what their role lets them do.

An authentication plugin answers with an `Identity` (or, written to the seed's
contract, with True: the plugin's configured role then names it). The request
carries it to the resources, into the bus calls it makes (for the activity
record) and into the log lines about it. Roles are ordered for the API's
management endpoints (viewer < operator < admin); `registrar` stands apart: it
may only register hosts, into the clusters it is scoped to.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Self


class Role(enum.StrEnum):
    VIEWER = "viewer"  # reads everything except credentials
    OPERATOR = "operator"  # viewer, plus hosts, cluster membership, operations
    ADMIN = "admin"  # everything: credentials, networks, container managers, tokens
    REGISTRAR = "registrar"  # self-registration only, into its scoped clusters

    def grants(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may."""
        if self is needed:
            return True
        if needed is Role.REGISTRAR:  # hosts register themselves; so may their operators
            return self in (Role.OPERATOR, Role.ADMIN)
        return self in _LADDER and needed in _LADDER \
            and _LADDER.index(self) >= _LADDER.index(needed)


_LADDER = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)


@dataclasses.dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    name: str
    """User name, certificate CN, token name or service account."""
    method: str
    """How they authenticated: "basic", "client-certificate", "token", "kubernetes",
    or "plugin:<module>" for a plugin written to the seed's contract."""
    role: Role
    groups: tuple[str, ...] = ()
    """Groups the authenticator vouches for (bound to roles by the configuration)."""
    clusters: tuple[str, ...] = ()
    """The clusters a scoped identity (a registrar or a scoped token) may touch;
    empty = every cluster."""

    def to_dict(self) -> dict[str, object]:
        """The form that travels on the bus and into the activity record."""
        return {"name": self.name, "method": self.method, "role": self.role.value,
                "groups": list(self.groups), "clusters": list(self.clusters)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Self:
        groups, clusters = data.get("groups", []), data.get("clusters", [])
        return cls(name=str(data["name"]), method=str(data["method"]),
                   role=Role(str(data["role"])),
                   groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
                   clusters=tuple(str(c) for c in clusters)
                   if isinstance(clusters, list) else ())


#: Where no role is configured, every authenticated caller keeps today's powers.
UNBOUND_ROLE = Role.ADMIN
