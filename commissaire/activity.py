"""The activity stream: one record per change made through the API and per step
of a rolling operation.

Who did what to which object, from where, under which request id, and how it
ended (refusals included). An entry is written twice: as one JSON line on the
logger "commissaire.activity" (for shipping elsewhere; always, even when the
store is down) and into the store (GET /api/v0/events), where retention bounds
it. Secrets never enter an entry: every field the models declare secret
(HostCreds' key, a container manager's token, ...) is replaced by "******"
before the entry exists (`redact`), wherever it is nested.

Ids sort by time: zero-padded microseconds since the epoch, then a random
suffix, so a key range of the store is a time range in etcd and SQLite alike.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import secrets
from typing import Any, ClassVar

import attrs

from commissaire.errors import ValidationError
from commissaire.models import MODELS, Model, Role, declared
from commissaire.states import ACTIONS
from commissaire.validation import ISO_TIME

#: The logger whose lines are the stream, one JSON object each.
LOGGER = logging.getLogger("commissaire.activity")

MASK = "******"

#: The actor of a request without (valid) credentials.
ANONYMOUS = {"name": "anonymous", "method": "none"}

_ID = re.compile(r"[0-9]{16}-[0-9a-f]{8}")
_ID_DIGITS = 16
_STRING_MAX = 512  # characters of one value kept in `fields`
_LIST_MAX = 50  # items of one list kept in `fields`
_DEPTH_MAX = 6


def _secret_names() -> frozenset[str]:
    """Every field or mapping key a model declares secret (or a credential: a
    token's digest, the token shown once at its creation), read from the models."""
    names: set[str] = set()
    for cls in MODELS.values():
        names.update(cls.names(Role.CREDENTIAL))
        names.update(cls.shown_once)
        for keys in cls.secret_keys().values():
            names.update(keys)
    return frozenset(names)


#: Field names whose values are never written into an entry (ssh_priv_key, token,
#: digest, ...).
SECRET_NAMES = _secret_names()


def redact(value: Any, depth: int = 0) -> Any:
    """`value` with every secret masked and bounded in size: a key named as a secret
    by any model gets MASK at any depth; long strings and lists are cut."""
    if depth > _DEPTH_MAX:
        return "…"
    if isinstance(value, dict):
        return {str(k)[:_STRING_MAX]: MASK if k in SECRET_NAMES else redact(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        kept = [redact(v, depth + 1) for v in value[:_LIST_MAX]]
        if len(value) > _LIST_MAX:
            kept.append(f"… {len(value) - _LIST_MAX} more")
        return kept
    if isinstance(value, str) and len(value) > _STRING_MAX:
        return value[:_STRING_MAX] + "…"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)[:_STRING_MAX]


def utc(moment: _dt.datetime) -> _dt.datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_dt.UTC)
    return moment.astimezone(_dt.UTC)


def micros(moment: _dt.datetime) -> int:
    """Microseconds since the epoch."""
    delta = utc(moment) - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def id_floor(moment: _dt.datetime) -> str:
    """The smallest id of an entry made at or after `moment` (a key range bound)."""
    return f"{min(max(0, micros(moment)), 10**_ID_DIGITS - 1):0{_ID_DIGITS}d}"


def new_id(moment: _dt.datetime) -> str:
    return f"{id_floor(moment)}-{secrets.token_hex(4)}"


# What parse_time takes, as a pattern (the query's schema): commissaire.validation's.
_ISO_TIME = re.compile(ISO_TIME)
_EARLIEST = _dt.datetime.min.replace(tzinfo=_dt.UTC)
_LATEST = _dt.datetime.max.replace(tzinfo=_dt.UTC)


def parse_time(text: str, field: str) -> _dt.datetime:
    """An ISO 8601 time as ISO_TIME says (UTC when it names no offset), else a 400."""
    if not _ISO_TIME.fullmatch(text):
        raise ValidationError("must be an ISO 8601 time, e.g. 2030-01-31T12:00:00Z",
                              field=field)
    moment = _dt.datetime.fromisoformat(text)
    try:
        return utc(moment)
    except OverflowError:  # an offset beyond year 1 or 9999
        return _LATEST if moment.year > 1 else _EARLIEST


def iso(moment: _dt.datetime) -> str:
    """As every timestamp of the records: ISO 8601, UTC, no offset suffix."""
    return utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds")


@attrs.define(kw_only=True, repr=False)
class Event(Model):
    """One entry of the activity stream."""

    kind: ClassVar[str] = "Event"
    key_field: ClassVar[str] = "id"
    collection: ClassVar[str] = "events"

    id: str = declared("")
    at: str = declared("")
    actor: dict[str, Any] = declared({})
    """{"name", "method"}: who, and how they authenticated ("service" for a service)."""
    source: str = declared("")
    """The client's address (behind trusted proxies, the forwarded one); "" for a service."""
    request_id: str = declared("")
    action: str = declared("")
    object: dict[str, Any] = declared({})
    """{"kind", "key"}: host 10.0.0.1, cluster c1, cluster c1/restart, cluster c1/hosts/A."""
    fields: dict[str, Any] = declared({})
    """The changed fields as given, secrets masked."""
    outcome: dict[str, Any] = declared({})
    """{"status": HTTP status code, "error": the error's description ("" on success)}."""

    def validate(self) -> None:
        if not _ID.fullmatch(self.id):
            raise ValidationError("must be 16 digits, '-' and 8 hex digits", field="id")
        if self.action not in ACTIONS:
            raise ValidationError("must be one of: " + ", ".join(ACTIONS), field="action")
        for name in ("actor", "object", "fields", "outcome"):
            if not isinstance(getattr(self, name), dict):
                raise ValidationError("must be an object", field=name)

    @property
    def object_path(self) -> str:
        return f"{self.object.get('kind', '')}/{self.object.get('key', '')}"

    def json_line(self) -> str:
        """The entry as one line of JSON (newlines in values are escaped by json)."""
        return json.dumps(self.to_safe_dict(), sort_keys=True)


def make(action: str, kind: str, key: str, *, actor: dict[str, Any] | None = None,
         source: str = "", request_id: str = "", fields: dict[str, Any] | None = None,
         status: int = 200, error: str = "",
         moment: _dt.datetime | None = None) -> Event:
    """A new entry made now (or at `moment`), its fields redacted."""
    when = moment or _dt.datetime.now(_dt.UTC)
    return Event(id=new_id(when), at=iso(when),
                 actor=dict(actor or ANONYMOUS), source=source, request_id=request_id,
                 action=action, object={"kind": kind, "key": key},
                 fields=redact(fields or {}),
                 outcome={"status": status, "error": error[:_STRING_MAX]})


def log(event: Event) -> None:
    """Write the entry's JSON line (never raises: logging is not allowed to fail a change)."""
    try:
        LOGGER.info("%s", event.json_line())
    except Exception:  # noqa: BLE001  (a broken handler must not break the request)
        logging.getLogger(__name__).warning("could not log activity entry %s", event.id)


__all__ = ["ACTIONS", "ANONYMOUS", "Event", "ISO_TIME", "LOGGER", "MASK", "SECRET_NAMES", "id_floor",
           "iso", "log", "make", "new_id", "parse_time", "redact"]
