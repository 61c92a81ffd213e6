"""API tokens in the store: made, listed, revoked and verified by the storage service.

A token's record is kept under its name (`tokens/<name>`, names stay unique)
and indexed by its public id (`token_ids/<id>` -> name), both written and
deleted in one transaction: verifying a token string is two reads, whatever the
number of tokens. The token string is made here, answered once by
`create_token` and never stored, logged or notified: the record keeps only its
SHA-256 digest (commissaire.apitokens says why a fast hash is right).

`verify_token` answers the same "invalid token" for a malformed, unknown,
revoked or expired token, so a caller learns nothing about which. It records
`last_used_at` at most once a minute per token (one store write a minute, not
one per request; a write that races another copy's is retried, then found
fresh, and never fails the verification).
"""
from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from typing import Any

from commissaire import apitokens, errors
from commissaire.models import ApiToken, ApiTokenId, Cluster, Model, as_utc_text, parse_utc
from commissaire.validation import validate_name
from commissaire_service.service import bus_method, current_actor
from commissaire_service.storage.repository import Current, Repository, Snapshot

logger = logging.getLogger(__name__)

#: Seconds between two recordings of a token's last use.
TOUCH_INTERVAL = 60.0


def now() -> _dt.datetime:
    """The time tokens expire by (tests move it)."""
    return _dt.datetime.now(_dt.UTC)


def invalid() -> errors.InvalidToken:
    """The one answer to every token that does not admit its bearer."""
    return errors.InvalidToken("invalid token")


class TokenMethods:
    """Mixin of the storage service: the API token methods."""

    repo: Repository
    #: StorageService's: publishes a committed change (the record's safe form).
    _announce: Callable[[Model, str], None]

    @bus_method()
    def create_token(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new token (a name in use: 409) and answer its string, once.

        The id, digest and creation fields are made here, whatever `record` says;
        its clusters must exist (409 naming `clusters` otherwise)."""
        new = ApiToken.from_dict(record)
        new.validate()
        token_id, token = apitokens.new()
        actor = current_actor()
        new.id, new.digest = token_id, apitokens.digest(token)
        new.created_at, new.created_by = as_utc_text(now()), actor.name if actor else ""
        new.last_used_at = None
        keys = [("ApiToken", new.name, ""), ("ApiTokenId", token_id, "")]
        keys += [("Cluster", cluster, "") for cluster in new.clusters]

        def mutate(current: Current, snap: Snapshot) -> ApiToken:
            if current.of(ApiToken, new.name) is not None:
                raise errors.Conflict(f"token {new.name!r} already exists; tokens are not "
                                      "idempotent: revoke it first, or choose another name",
                                      field="name")
            if current.of(ApiTokenId, token_id) is not None:  # 2^-64: make another
                raise errors.Conflict("token id collision; try again")
            for cluster in new.clusters:
                if current.of(Cluster, cluster) is None:
                    raise errors.Conflict(f"cluster {cluster!r} does not exist",
                                          field="clusters")
            snap.put(new)
            snap.put(ApiTokenId(id=token_id, name=new.name))
            return new

        created = self.repo.change(keys, mutate)
        self._announce(created, "created")
        return {"record": created.to_safe_dict(), "token": token}

    @bus_method()
    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token, without digest (and no token string exists to show)."""
        return [token.to_safe_dict() for token in self.repo.list_all(ApiToken)]

    @bus_method()
    def get_token(self, name: str) -> dict[str, Any]:
        return self.repo.require(ApiToken, validate_name(name)).to_safe_dict()

    @bus_method()
    def revoke_token(self, name: str) -> list[Any]:
        """Delete a token and its index at once: its next use is refused."""
        name = validate_name(name)
        token = self.repo.require(ApiToken, name)

        def mutate(current: Current, snap: Snapshot) -> ApiToken:
            record = current.of(ApiToken, name)
            if record is None:
                raise errors.NotFound(f"token {name!r} does not exist")
            if record.id != token.id:  # revoked and made again meanwhile: start over
                raise errors.Conflict(f"token {name!r} changed meanwhile; try again")
            snap.delete(record)
            index = current.of(ApiTokenId, record.id)
            if index is not None:
                snap.delete(index)
            return record

        revoked = self.repo.change([("ApiToken", name, ""), ("ApiTokenId", token.id, "")],
                                   mutate)
        self._announce(revoked, "deleted")
        return []

    @bus_method()
    def verify_token(self, token: str) -> dict[str, Any]:
        """The identity a token string stands for (name, role, clusters), or
        InvalidToken ("invalid token", a 401) however it fails."""
        token_id = apitokens.token_id(token)
        if token_id is None:
            raise invalid()
        index = self.repo.get(ApiTokenId, token_id)
        record = None if index is None else self.repo.get(ApiToken, index.name)
        moment = now()
        if record is None or record.id != token_id or not record.digest \
                or not apitokens.matches(token, record.digest) or record.expired(moment):
            raise invalid()
        self._touch(record, moment)
        return {"name": record.name, "role": record.role, "clusters": list(record.clusters)}

    def _touch(self, record: ApiToken, moment: _dt.datetime) -> None:
        """Record the use, unless one was recorded less than TOUCH_INTERVAL ago."""
        if not _stale(record.last_used_at, moment):
            return

        def mutate(current: Current, snap: Snapshot) -> None:
            stored = current.of(ApiToken, record.name)
            if stored is None or stored.id != record.id \
                    or not _stale(stored.last_used_at, moment):
                return  # revoked meanwhile, or another request recorded it
            stored.last_used_at = as_utc_text(moment)
            snap.put(stored)

        try:
            self.repo.change([("ApiToken", record.name, "")], mutate)
        except errors.CommissaireError as exc:  # the use is admitted all the same
            logger.warning("could not record the last use of token %r: %s", record.name,
                           exc.description)


def _stale(last_used_at: str | None, moment: _dt.datetime) -> bool:
    if last_used_at is None:
        return True
    try:
        last = parse_utc(last_used_at, "last_used_at")
    except errors.ValidationError:
        return True
    return (moment - last).total_seconds() >= TOUCH_INTERVAL or last > moment


__all__ = ["TOUCH_INTERVAL", "TokenMethods", "invalid", "now"]
