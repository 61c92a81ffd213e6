"""Printing what the server answered: -o json (its JSON as is), yaml, or table.

json and yaml print the server's data unchanged, for scripts; table is for
people, and each command may give its own rendering (see commands.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

FORMATS = ("table", "json", "yaml")


def to_json(data: Any, compact: bool = False) -> str:
    if compact:
        return json.dumps(data, separators=(",", ":"))
    return json.dumps(data, indent=2)


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False).rstrip("\n")


def emit(data: Any, fmt: str, out: TextIO, table: Callable[[Any], str] | None = None) -> None:
    """Print `data` in `fmt`; `table` renders it for people (default: generic())."""
    if fmt == "json":
        text = to_json(data)
    elif fmt == "yaml":
        text = to_yaml(data)
    else:
        text = (table or generic)(data)
    if text:
        print(text, file=out)


def cell(value: object) -> str:
    """One value as table text: '-' for nothing, lists comma-joined."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) if value else "-"
    return str(value)


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested objects as dotted keys: {"hosts": {"total": 3}} -> [("hosts.total", 3)]."""
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(flatten(value, name + "."))
        else:
            items.append((name, value))
    return items


def key_values(data: dict[str, Any], hide: Sequence[str] = ()) -> str:
    pairs = [(k, v) for k, v in flatten(data) if k not in hide]
    if not pairs:
        return ""
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k + ':':<{width + 1}} {cell(v)}" for k, v in pairs)


def columns(rows: Sequence[dict[str, Any]], spec: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]
            ) -> str:
    """A table with a header: spec is [(HEADER, row -> value)]."""
    cells = [[header for header, _ in spec]]
    cells += [[cell(get(row)) for _, get in spec] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(spec))]
    return "\n".join("  ".join(text.ljust(widths[i]) for i, text in enumerate(line)).rstrip()
                     for line in cells)


def _field(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


def generic(data: Any) -> str:
    """A readable rendering of any JSON: names one per line, objects as key: value."""
    if isinstance(data, list):
        if all(isinstance(item, dict) for item in data) and data:
            keys = list(dict.fromkeys(k for item in data for k in item))
            return columns(data, [(k.upper(), _field(k)) for k in keys])
        return "\n".join(cell(item) for item in data)
    if isinstance(data, dict):
        return key_values(data)
    return "" if data is None else str(data)


def kib(value: object) -> str:
    """Memory and disk sizes, which the server keeps in KiB, for people."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return "-"
    size = float(value)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "KiB" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} KiB"
