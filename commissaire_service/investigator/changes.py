"""What a bootstrap changed on a host, in one line for the investigator's log.

The playbook's last step records `commissaire_bootstrap_changes` (components
installed or already present, files written, services restarted). It arrives
from a run against a managed host, so it is read as untrusted: only names that
match an allow-list are repeated, anything else is counted, never echoed.
"""
from __future__ import annotations

import re

# component names (docker, cri-o), unit names (flanneld), absolute paths we write
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}")
_PATH = re.compile(r"/[A-Za-z0-9._/@+-]{1,255}")
_MAX_ITEMS = 20


def _names(value: object, pattern: re.Pattern[str]) -> list[str]:
    if not isinstance(value, list):
        return []
    kept = [item for item in value if isinstance(item, str) and pattern.fullmatch(item)]
    shown = kept[:_MAX_ITEMS]
    hidden = len(value) - len(shown)
    return shown + ([f"{hidden} more"] if hidden else [])


def summarize(changes: object) -> str:
    """'nothing to change (already present: docker, flannel)', or what was
    installed, configured and restarted; '' if the run recorded nothing."""
    if not isinstance(changes, dict):
        return ""
    installed = _names(changes.get("installed"), _NAME)
    present = _names(changes.get("already_present"), _NAME)
    configured = _names(changes.get("configured"), _PATH)
    restarted = _names(changes.get("restarted"), _NAME)
    if not (installed or configured or restarted):
        return "nothing to change" + (f" (already present: {', '.join(present)})" if present else "")
    parts = []
    if installed:
        parts.append("installed " + ", ".join(installed))
    if present:
        parts.append("already present " + ", ".join(present))
    if configured:
        parts.append("wrote " + ", ".join(configured))
    if restarted:
        parts.append("restarted " + ", ".join(restarted))
    return "; ".join(parts)
