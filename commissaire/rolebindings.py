"""Which role a caller gets from the server configuration's `role-bindings`.

    {"users": {"alice": "admin"}, "groups": {"ops": "operator"},
     "certificates": {"build.example.com": "registrar"}, "tokens": {"ci": "viewer"}}

Each kind binds names of its own kind only: a user binding never matches a
certificate CN or a token of the same name. Parsed (and validated, errors naming
the entry at fault) once when the configuration is loaded; looked up per request.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from commissaire.identity import Role

KINDS = ("users", "groups", "certificates", "tokens")
MAX_NAME = 256

# The identity methods whose names are certificate CNs or token names; any other
# method (basic, kubernetes, a plugin's) names a user.
_KIND_OF_METHOD = {"client-certificate": "certificates", "token": "tokens"}


def _strength(role: Role) -> int:
    """How much a role may do, to pick among several bound groups."""
    return sum(role.grants(other) for other in Role)


def _name_problem(name: str) -> str | None:
    if not name:
        return "an empty name"
    if len(name) > MAX_NAME:
        return f"a name longer than {MAX_NAME} characters"
    if not name.isprintable():
        return "a name with control characters"
    return None


def _parse_kind(kind: str, entries: object) -> Mapping[str, Role]:
    if not isinstance(entries, dict):
        raise ValueError(f"{kind}: must map names to roles")
    parsed: dict[str, Role] = {}
    for name, role in entries.items():
        problem = _name_problem(name) if isinstance(name, str) else "a name that is not text"
        if problem:
            raise ValueError(f"{kind}: {ascii(name)[:80]} is {problem}")
        try:
            parsed[name] = Role(role)
        except ValueError:
            raise ValueError(f"{kind}.{ascii(name)[1:-1]}: {ascii(role)[:40]} is not a role "
                             f"(one of: {', '.join(r.value for r in Role)})") from None
    return MappingProxyType(parsed)


@dataclasses.dataclass(frozen=True)
class RoleBindings:
    users: Mapping[str, Role] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, Role] = dataclasses.field(default_factory=dict)
    certificates: Mapping[str, Role] = dataclasses.field(default_factory=dict)
    tokens: Mapping[str, Role] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, data: object) -> RoleBindings:
        """From the configuration's JSON; ValueError names the entry at fault."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError('must be an object such as {"users": {"alice": "admin"}}')
        unknown = sorted(str(k) for k in data if k not in KINDS)
        if unknown:
            raise ValueError(f"{ascii(unknown[0])[:80]} is not a kind of binding "
                             f"(known: {', '.join(KINDS)})")
        return cls(**{kind: _parse_kind(kind, entries) for kind, entries in data.items()})

    @property
    def configured(self) -> bool:
        return any((self.users, self.groups, self.certificates, self.tokens))

    def lookup(self, name: str, method: str, groups: tuple[str, ...] = ()) -> Role | None:
        """The role bound to the caller: its user (or token) name first, then the
        strongest role bound to one of its groups, then its certificate's CN (the
        method says which kind its name is); None when nothing is bound."""
        kind = _KIND_OF_METHOD.get(method, "users")
        if kind != "certificates":
            own: Mapping[str, Role] = getattr(self, kind)
            if name in own:
                return own[name]
        bound = [self.groups[g] for g in groups if g in self.groups]
        if bound:
            return max(bound, key=_strength)  # ties: the first of the caller's groups
        if kind == "certificates":
            return self.certificates.get(name)
        return None
