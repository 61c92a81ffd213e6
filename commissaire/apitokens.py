"""API token strings: how they are made, recognised and checked.

A token is `cmt_<id>_<secret>`: a fixed prefix that secret scanners (and people)
can grep for, a public random id that indexes its record (the server finds it
in one read, whatever the number of tokens), and 256 random bits. Only the
SHA-256 digest of the whole string is stored. A fast, unsalted hash is right
here, unlike for passwords: the secret is 256 uniformly random bits, so there
is nothing to guess and no dictionary to precompute; bcrypt would only cost
every request. Digests are compared in constant time (hmac.compare_digest).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "cmt_"
ID = r"[0-9a-f]{16}"
_SECRET_BYTES = 32  # 256 bits
SECRET = r"[A-Za-z0-9_-]{43}"  # token_urlsafe(32): 43 characters, no padding
TOKEN = rf"{PREFIX}{ID}_{SECRET}"
#: The length of every token string.
LENGTH = len(PREFIX) + 16 + 1 + 43
_TOKEN = re.compile(rf"{PREFIX}({ID})_{SECRET}")


def new() -> tuple[str, str]:
    """A new (id, token string)."""
    token_id = secrets.token_hex(8)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def token_id(text: object) -> str | None:
    """The id of a well-formed token string, None for anything else (never raises)."""
    if not isinstance(text, str) or len(text) != LENGTH:
        return None
    found = _TOKEN.fullmatch(text)
    return found.group(1) if found else None


def digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def matches(token: str, stored_digest: str) -> bool:
    """Whether `token` is the one `stored_digest` was made from (constant time)."""
    return hmac.compare_digest(digest(token).encode("ascii"),
                               stored_digest.encode("ascii", "replace"))


__all__ = ["ID", "LENGTH", "PREFIX", "TOKEN", "digest", "matches", "new", "token_id"]
