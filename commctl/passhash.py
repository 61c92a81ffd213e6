"""`commctl passhash`: a bcrypt hash for the server's users file (conf/users.json).

The password comes from --password, --file (- for stdin), a prompt typed twice on
a terminal, or the first line of stdin when stdin is not a terminal.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

import bcrypt

from commctl.exitstatus import CommctlError, ExitStatus

# bcrypt reads only the first 72 bytes; the server refuses longer passwords
# rather than silently accept any password sharing them.
MAX_BYTES = 72
MIN_ROUNDS, MAX_ROUNDS = 4, 31


def _strip_newline(text: str) -> str:
    """Drop the one line ending a file or pipe adds; keep any other whitespace."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def read_password(password: str | None, file: str | None, stdin: TextIO,
                  ask: Callable[[str], str] | None) -> str:
    """The password to hash; `ask` is getpass when stdin is a terminal, else None."""
    if password is not None:
        return password
    if file is not None:
        if file == "-":
            return _strip_newline(stdin.read())
        try:
            with open(file, encoding="utf-8") as handle:
                return _strip_newline(handle.read())
        except OSError as exc:
            raise CommctlError(f"cannot read {file}: {exc.strerror}") from None
    if ask is None:
        return _strip_newline(stdin.readline())
    first = ask("Password: ")
    if ask("Password (again): ") != first:
        raise CommctlError("the passwords typed do not match")
    return first


def hash_password(password: str, rounds: int = 12) -> str:
    if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise CommctlError(f"--rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}",
                           ExitStatus.USAGE)
    secret = password.encode("utf-8")
    if not secret:
        raise CommctlError("the password is empty", ExitStatus.USAGE)
    if len(secret) > MAX_BYTES:
        raise CommctlError(f"the password is longer than {MAX_BYTES} bytes, which bcrypt "
                           "cannot check", ExitStatus.USAGE)
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode()

