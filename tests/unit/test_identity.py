"""Roles and identities: which role grants what, and the form that crosses the bus."""
from __future__ import annotations

import pytest

from commissaire.identity import Identity, Role


@pytest.mark.parametrize(("role", "granted"), [
    (Role.VIEWER, {Role.VIEWER}),
    (Role.OPERATOR, {Role.VIEWER, Role.OPERATOR, Role.REGISTRAR}),
    (Role.ADMIN, {Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.REGISTRAR}),
    (Role.REGISTRAR, {Role.REGISTRAR}),
])
def test_each_role_grants_exactly_its_own_and_lower_powers(role: Role, granted: set[Role]
                                                           ) -> None:
    assert {needed for needed in Role if role.grants(needed)} == granted


def test_an_identity_crosses_the_bus_unchanged() -> None:
    who = Identity(name="ci-bot", method="token", role=Role.REGISTRAR, groups=("ci",),
                   clusters=("edge",))
    assert Identity.from_dict(who.to_dict()) == who
    with pytest.raises(ValueError):
        Identity.from_dict({**who.to_dict(), "role": "root"})
