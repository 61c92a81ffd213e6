"""Progress of a rolling operation (restart, upgrade, deploy), once or until it ends.

--watch polls the operation's GET until its status leaves in_process. On a
terminal the table is redrawn in place; otherwise a new rendering is printed
only when something changed (json as one line per change), so a log of a long
upgrade stays readable.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from commctl.client import Client, path
from commctl.exitstatus import ExitStatus
from commctl.output import cell, columns, to_json, to_yaml

DONE_LIST = {"restart": "restarted", "upgrade": "upgraded", "deploy": "deployed"}
CLEAR = "\x1b[H\x1b[2J"


def render(data: dict[str, Any], operation: str) -> str:
    """Summary line, counts, then one row per host."""
    hosts: dict[str, Any] = data.get("hosts") or {}
    title = f"{operation.capitalize()} of cluster {data.get('name', '?')}: {data.get('status', '?')}"
    if data.get("version"):
        title += f" (version {data['version']})"
    lines = [title, f"started: {cell(data.get('started_at'))}   finished: "
                    f"{cell(data.get('finished_at'))}"]
    if data.get("reason"):
        lines.append(f"reason: {data['reason']}")
    states = [h.get("state", "?") for h in hosts.values()]
    counts = ", ".join(f"{states.count(s)} {s}" for s in
                       ("done", "in_process", "failed", "pending", "skipped") if s in states)
    lines.append(f"hosts: {len(hosts)}" + (f" ({counts})" if counts else ""))
    if hosts:
        rows = [{"address": a, **h} for a, h in sorted(hosts.items())]
        lines += ["", columns(rows, [
            ("ADDRESS", lambda r: r["address"]), ("STATE", lambda r: r.get("state")),
            ("STARTED", lambda r: r.get("started_at")),
            ("FINISHED", lambda r: r.get("finished_at")), ("REASON", lambda r: r.get("reason")),
        ])]
    return "\n".join(lines)


def exit_status(data: dict[str, Any]) -> ExitStatus:
    """OK when the operation finished; ERROR when it failed or was aborted."""
    return ExitStatus.OK if data.get("status") == "finished" else ExitStatus.ERROR


def follow(client: Client, name: str, operation: str, fmt: str, out: TextIO, interval: float,
           is_tty: bool, sleep: Callable[[float], None] | None = None) -> ExitStatus:
    """Poll until the operation is no longer in_process; its exit status."""
    last = None
    while True:
        data = client.get(path("cluster", name, operation)).data
        if fmt == "json":
            text = to_json(data, compact=True)
        elif fmt == "yaml":
            text = "---\n" + to_yaml(data)
        else:
            text = render(data, operation)
        if is_tty and fmt == "table":
            out.write(CLEAR + text + "\n")
            out.flush()
        elif text != last:
            print(text, file=out, flush=True)
        last = text
        if data.get("status") != "in_process":
            return exit_status(data)
        (sleep or time.sleep)(interval)
