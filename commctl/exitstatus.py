"""Exit statuses, and the one error class every command raises to end with one.

Scripts branch on the status (retry on UNREACHABLE, create on NOT_FOUND, ...),
so each kind of failure has its own and the HTTP status maps to it in one place.
"""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # anything without a more precise status (bad local file, failed operation)
    USAGE = 2  # bad command line or configuration (argparse also exits 2)
    AUTH = 3  # 401/403: missing, wrong or insufficient credentials
    NOT_FOUND = 4  # 404
    CONFLICT = 5  # 409
    SERVER = 6  # 5xx: the server or what is behind it failed
    UNREACHABLE = 7  # no endpoint could be connected to (or none answered in time)
    INVALID = 8  # 400: the server refused the input and said which field
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def status_for_http(code: int) -> ExitStatus:
    """The exit status for an HTTP error status."""
    if code == 400:
        return ExitStatus.INVALID
    if code in (401, 403):
        return ExitStatus.AUTH
    if code == 404:
        return ExitStatus.NOT_FOUND
    if code == 409:
        return ExitStatus.CONFLICT
    if code >= 500:
        return ExitStatus.SERVER
    return ExitStatus.ERROR


class CommctlError(Exception):
    """A failure to report on stderr as `commctl: <message>` and exit with `status`."""

    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
