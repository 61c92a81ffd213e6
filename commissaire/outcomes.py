"""How acting on a host over SSH ended: one enum for the light probe
(commissaire.ssh) and for Ansible runs (commissaire.ansible.runner)."""
from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_MISMATCH = "host_key_mismatch"
    HOST_KEY_NOT_PINNED = "host_key_not_pinned"
    FAILED = "failed"  # reached, but a task failed
