"""A host's facts are the host's word: checked here before anything is stored.

The OS a host reports (os-release's ID, which whoever controls the host
writes) is mapped onto the known profiles of playbooks/os/ or refused; the raw
text is never stored as `os`, never used in a path, and appears in a reason
only sanitized (one line, safe characters, bounded). Numbers must be integers
within bounds; the version must match a strict pattern.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from commissaire.ansible.runner import OS_PROFILES

#: Upper bounds of the numbers a host reports (KiB for memory and space).
BOUNDS = {"cpus": 1 << 16, "memory": 1 << 50, "space": 1 << 60}
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
SHOWN = 64  # characters of a host's text shown in a reason, at most


def shown(raw: object) -> str:
    """A host's text as it may appear in a status reason."""
    text = _UNSAFE_CHARS.sub("?", str(raw))
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def os_profile(raw: object) -> str:
    """The profile the reported OS maps onto; '' when Commissaire knows none."""
    return raw if isinstance(raw, str) and raw in OS_PROFILES else ""


def checked(facts: Mapping[str, object]) -> tuple[dict[str, object], str]:
    """(the host changes to store, '') or ({}, why the host fails)."""
    raw_os = facts.get("os", "")
    profile = os_profile(raw_os)
    if not profile:
        return {}, (f"unsupported OS: {shown(raw_os)} (Commissaire knows "
                    f"{', '.join(OS_PROFILES)})")
    changes: dict[str, object] = {"os": profile}
    for name, bound in BOUNDS.items():
        value = facts.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bound:
            return {}, f"the host reported an invalid {name}: {shown(value)}"
        changes[name] = value
    version = facts.get("version", "")
    if version and not (isinstance(version, str) and VERSION.fullmatch(version)):
        return {}, f"the host reported an invalid version: {shown(version)}"
    return changes, ""
