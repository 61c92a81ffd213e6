"""The activity stream in the store: written with bounded retention, read by filters.

Entries live under `events/<id>`, ids ordered by time (commissaire.activity), so
a time window is a key range and the oldest entries are the first keys, in etcd
and SQLite alike: one implementation over the StoreHandler interface (`scan`,
`count`, `commit`) serves both.

Retention is enforced on write, with bounded work: each write also deletes the
oldest entries beyond `max_count` and those older than `max_age`, at most
PRUNE_BATCH of them, in the same transaction (each write adds one, so the
stream converges to its bounds). Reads never show an entry older than
`max_age`, even before a write has pruned it.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from collections.abc import Callable
from typing import Any

from commissaire import activity, errors
from commissaire.activity import Event
from commissaire.models import model_class
from commissaire.storage.base import Item, StoreHandler, Txn
from commissaire_service.service import bus_method
from commissaire_service.storage.repository import Handlers

logger = logging.getLogger(__name__)

PRUNE_BATCH = 100
_START = f"{Event.collection}/"
_END = f"{Event.collection}0"  # the first key after every "events/..." key
_MICROSECOND = _dt.timedelta(microseconds=1)

#: The services' own steps of an operation are theirs.
CLUSTEREXEC = {"name": "clusterexec", "method": "service"}
STORAGE = {"name": "storage", "method": "service"}


@dataclasses.dataclass(frozen=True)
class Retention:
    """How much of the stream the store keeps."""

    max_age: float = 30 * 86400.0
    """Seconds an entry is kept."""
    max_count: int = 100_000
    """Entries kept at most (the oldest go first)."""


@dataclasses.dataclass(frozen=True)
class Page:
    total: int
    items: list[Event]


class ActivityLog:
    """Entries in the store handler that keeps "Event" records."""

    def __init__(self, handlers: Handlers, retention: Retention | None = None,
                 now: Callable[[], _dt.datetime] | None = None) -> None:
        self.handlers = handlers
        self.retention = retention or Retention()
        self.now = now or (lambda: _dt.datetime.now(_dt.UTC))

    def _handler(self) -> StoreHandler:
        return self.handlers.for_model(Event.kind)

    def _cutoff(self) -> str:
        oldest = self.now() - _dt.timedelta(seconds=self.retention.max_age)
        return _START + activity.id_floor(oldest)

    def record(self, event: Event) -> None:
        """Store one entry, and prune what retention no longer keeps."""
        event.validate()
        handler = self._handler()
        key = _START + event.id
        victims = [k for k in self._victims(handler) if k != key]
        handler.commit(Txn(puts=[(key, event.to_stored_dict())], deletes=victims))

    def _victims(self, handler: StoreHandler) -> list[str]:
        """The oldest keys beyond the count (counting the one being added) or the age."""
        excess = handler.count(_START, _END) + 1 - self.retention.max_count
        cutoff = self._cutoff()
        first = handler.scan(_START, _END, limit=1)
        if excess <= 0 and (not first or first[0].key >= cutoff):
            return []
        oldest = [item.key for item in handler.scan(_START, _END, limit=PRUNE_BATCH)]
        expired = sum(1 for key in oldest if key < cutoff)
        return oldest[:min(PRUNE_BATCH, max(excess, expired))]

    def query(self, object_kind: str = "", object_key: str = "", actor: str = "",
              action: str = "", since: _dt.datetime | None = None,
              until: _dt.datetime | None = None, limit: int = 0, offset: int = 0,
              newest_first: bool = True) -> Page:
        """Entries matching every filter given, one page of them, and how many matched.

        Without object, actor or action filters only the page is read (and the
        total counted); with them, the time window is read and filtered here."""
        low = self._cutoff()
        if since is not None:
            low = max(low, _START + activity.id_floor(since))
        try:
            high = _END if until is None else _START + activity.id_floor(until + _MICROSECOND)
        except OverflowError:  # until the end of time
            high = _END
        if low >= high:
            return Page(0, [])
        handler = self._handler()
        if not (object_kind or object_key or actor or action):
            total = handler.count(low, high)
            items = handler.scan(low, high, limit=offset + limit if limit else 0,
                                 newest_first=newest_first)[offset:]
            return Page(total, [_event(item) for item in items])
        matched = [event for event in map(_event, handler.scan(low, high,
                                                               newest_first=newest_first))
                   if _matches(event, object_kind, object_key, actor, action)]
        page = matched[offset:offset + limit] if limit else matched[offset:]
        return Page(len(matched), page)


def _event(item: Item) -> Event:
    return Event.from_dict(item.value)


def _matches(event: Event, kind: str, key: str, actor: str, action: str) -> bool:
    if actor and event.actor.get("name") != actor:
        return False
    if action and event.action != action:
        return False
    if kind and not _about(event, kind, key):
        return False
    return True


def _about(event: Event, kind: str, key: str) -> bool:
    """The entry is about kind/key: that object, a part of it (cluster c1 holds
    c1/restart and c1/hosts/A), or, for a host, a membership or step naming it."""
    own_kind, own_key = event.object.get("kind"), str(event.object.get("key", ""))
    if own_kind == kind and (not key or own_key == key or own_key.startswith(key + "/")):
        return True
    return kind == "host" and bool(key) and event.fields.get("host") == key


def operation_key(kind: str, name: str) -> str:
    """The object key of a cluster's operation: "c1/restart"."""
    return f"{name}/{getattr(model_class(kind), 'operation', kind)}"


class ActivityMethods:
    """Mixin of the storage service: the stream's bus methods, and the entries the
    service writes itself (the steps of rolling operations)."""

    activity: ActivityLog

    @bus_method()
    def record_event(self, event: dict[str, Any]) -> list[Any]:
        """Store an entry made elsewhere (the REST server logged its line already);
        its fields are redacted once more here."""
        if not isinstance(event, dict):
            raise errors.ValidationError("must be an object", field="event")
        record = Event.from_dict(event)
        record.fields = activity.redact(record.fields)
        self.activity.record(record)
        return []

    @bus_method()
    def list_events(self, object_kind: str = "", object_key: str = "", actor: str = "",
                    action: str = "", since: str = "", until: str = "", limit: int = 0,
                    offset: int = 0, order: str = "newest") -> dict[str, Any]:
        """Entries by object (kind, and key or a part of it), actor name, action and
        time window (ISO 8601, inclusive); newest first unless order is "oldest"."""
        if order not in ("newest", "oldest"):
            raise errors.ValidationError("must be newest or oldest", field="order")
        if limit < 0 or offset < 0:
            raise errors.ValidationError("must not be negative", field="limit")
        page = self.activity.query(
            object_kind, object_key, actor, action,
            since=activity.parse_time(since, "since") if since else None,
            until=activity.parse_time(until, "until") if until else None,
            limit=limit, offset=offset, newest_first=order == "newest")
        return {"total": page.total, "items": [e.to_safe_dict() for e in page.items]}

    def _operation_event(self, action: str, kind: str, name: str, fields: dict[str, Any],
                         actor: dict[str, Any] = CLUSTEREXEC) -> None:
        """Log and store a step of an operation; a failure to store is logged, never
        raised (the step itself is committed)."""
        event = activity.make(action, "cluster", operation_key(kind, name), actor=actor,
                              fields=fields)
        activity.log(event)
        try:
            self.activity.record(event)
        except errors.CommissaireError as exc:
            logger.warning("could not store activity entry %s: %s", event.id, exc.description)


__all__ = ["ActivityLog", "ActivityMethods", "Page", "Retention"]
