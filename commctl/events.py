"""The activity stream (GET /api/v0/events): shown once, or followed.

Shown once, entries come newest first, as the server pages them. Followed
(--follow), the latest ones are printed oldest first, then each new entry as it
arrives (polling for entries since the last one seen), until interrupted: like
`tail -f`, json as one line per entry.
"""
from __future__ import annotations

import datetime as _dt
import re
import time
from collections.abc import Callable
from typing import Any, TextIO

from commctl.client import Client
from commctl.exitstatus import CommctlError, ExitStatus
from commctl.output import cell, columns, to_json, to_yaml

PAGE = 100  # entries asked for per poll while following
_RELATIVE = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

#: Sleeps between polls; tests replace it.
sleep: Callable[[float], None] = time.sleep


def when(text: str, now: _dt.datetime | None = None) -> str:
    """--since/--until: ISO 8601 as given, or 30s, 15m, 2h, 7d ago (in UTC)."""
    found = _RELATIVE.fullmatch(text.strip())
    if not found:
        return text
    ago = _dt.timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    moment = (now or _dt.datetime.now(_dt.UTC)) - ago
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _detail(event: dict[str, Any]) -> str:
    outcome = event.get("outcome") or {}
    if outcome.get("error"):
        return str(outcome["error"])
    return cell(event.get("fields") or {})


COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("TIME", lambda e: str(e.get("at", ""))[:19].replace("T", " ")),
    ("ACTOR", lambda e: (e.get("actor") or {}).get("name")),
    ("SOURCE", lambda e: e.get("source")),
    ("ACTION", lambda e: e.get("action")),
    ("OBJECT", lambda e: "/".join(str(v) for v in ((e.get("object") or {}).get("kind"),
                                                   (e.get("object") or {}).get("key")) if v)),
    ("STATUS", lambda e: (e.get("outcome") or {}).get("status")),
    ("DETAIL", _detail),
]


def table(events: list[dict[str, Any]]) -> str:
    return columns(events, COLUMNS) if events else "No events."


def _print(events: list[dict[str, Any]], fmt: str, out: TextIO, header: bool) -> None:
    if fmt == "json":
        text = "\n".join(to_json(e, compact=True) for e in events)
    elif fmt == "yaml":
        text = "\n".join("---\n" + to_yaml(e) for e in events)
    else:
        lines = columns(events, COLUMNS).split("\n")
        text = "\n".join(lines if header else lines[1:])
    if text:
        print(text, file=out, flush=True)


def follow(client: Client, params: dict[str, str], fmt: str, out: TextIO, interval: float,
           latest: int) -> int:
    """Print the `latest` entries, then every new one; returns only by an exception
    (Ctrl-C: cli reports INTERRUPTED)."""
    if "until" in params:
        raise CommctlError("--follow shows entries as they come: it takes no --until",
                           ExitStatus.USAGE)
    first = client.get("events", params={**params, "order": "newest",
                                         "limit": str(latest)}).data or []
    shown = list(reversed(first))
    if fmt == "table" or shown:
        _print(shown, fmt, out, header=True)
    last_at = shown[-1]["at"] if shown else params.get("since", "")
    seen = {e["id"] for e in shown if e.get("at") == last_at}
    while True:
        sleep(interval)
        while True:
            query = {**params, "order": "oldest", "limit": str(PAGE)}
            if last_at:
                query["since"] = last_at
            page = client.get("events", params=query).data or []
            new = [e for e in page if e.get("id") not in seen]
            if new:
                _print(new, fmt, out, header=False)
                newest = new[-1]["at"]
                seen = ({e["id"] for e in new if e.get("at") == newest}
                        | (seen if newest == last_at else set()))
                last_at = newest
            if len(page) < PAGE or not new:
                break
