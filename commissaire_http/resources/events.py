"""/api/v0/events: the activity stream, filtered and paged, newest first by default."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon

from commissaire.activity import ACTIONS, ISO_TIME, parse_time
from commissaire.validation import string
from commissaire_http.activity import ActivityRecorder
from commissaire_http.resources.base import Bus, Resource, parse_query, respond

MAX_OFFSET = 10**9
DEFAULT_LIMIT = 100
FLUSH_WAIT = 1.0  # seconds a read waits for this process's entries still being stored

_PART = r"[A-Za-z0-9._:%-]{1,253}"
OBJECT_SCHEMA = string(rf"[a-z]{{1,32}}(?:/{_PART}){{0,3}}", 800, description=(
    "KIND or KIND/KEY: host/10.0.0.1, cluster/c1 (with its parts: cluster/c1/restart, "
    "cluster/c1/hosts/...), network/n1, containermanager/k; host/ADDRESS also lists the "
    "membership changes and operation steps naming the host"))
TIME_SCHEMA = string(ISO_TIME, 32, description="ISO 8601: a date, optionally T and a time "
                     "(to the microsecond) and Z or an offset; UTC unless one is given "
                     "(inclusive)")


class Events(Resource):
    """GET: entries by ?object=, ?actor=, ?action=, ?since=, ?until=; paged by
    ?limit= (default 100) and ?offset=; ?order=newest (default) or oldest."""

    def __init__(self, bus: Bus, recorder: ActivityRecorder, page_limit: int = 1000) -> None:
        """`recorder`: the middleware storing this process's entries; a read waits
        briefly for those still on their way (read your writes)."""
        super().__init__(bus)
        self.recorder = recorder
        self.page_limit = page_limit
        self.query = {
            "object": OBJECT_SCHEMA,
            "actor": string(r"[^\x00-\x1f\x7f]{1,256}", 256,
                            description="the actor's name (a user, or a service)"),
            "action": {"type": "string", "enum": list(ACTIONS)},
            "since": TIME_SCHEMA,
            "until": TIME_SCHEMA,
            "limit": {"type": "integer", "minimum": 1, "maximum": page_limit},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            "order": {"type": "string", "enum": ["newest", "oldest"]},
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_query(req, self.query)
        for name in ("since", "until"):
            if name in query:
                parse_time(query[name], name)  # a 400 naming the parameter
        kind, _, key = str(query.get("object", "")).partition("/")
        limit = query.get("limit", min(DEFAULT_LIMIT, self.page_limit))
        offset = query.get("offset", 0)
        self.recorder.flush(FLUSH_WAIT)
        page = self.storage(req).list_events(
            object_kind=kind, object_key=key, actor=query.get("actor", ""),
            action=query.get("action", ""), since=query.get("since", ""),
            until=query.get("until", ""), limit=limit, offset=offset,
            order=query.get("order", "newest"))
        resp.set_header("X-Total-Count", str(page.total))
        if offset + limit < page.total:
            following: dict[str, Any] = {k: v for k, v in query.items()
                                         if k not in ("limit", "offset")}
            following.update(limit=limit, offset=offset + limit)
            resp.set_header("Link", f'<{req.path}?{urlencode(following)}>; rel="next"')
        respond(resp, [event.to_safe_dict() for event in page.items])
