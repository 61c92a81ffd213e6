"""HTTP basic authentication against bcrypt hashes.

Options: `filepath` (a JSON file `{"user": {"hash": "$2b$..."}}`, the seed's
conf/users.json) and/or `users` (the same mapping inline). An entry may name the
user's role (`{"hash": ..., "role": "operator"}`); without one, the server's
role-bindings decide. A verified user is the Identity (user, method "basic"). bcrypt is slow on
purpose (~0.2 s at cost 12), so a successful check is remembered under an HMAC of
user and password keyed by a per-process random key: the cache never holds
anything that could be replayed or reversed, and a changed users file clears it.

No timing oracle: an unknown user name (or a broken stored hash) is checked
against a dummy hash of the users' bcrypt cost, so it costs what a known one
costs. The cache only answers fast for the exact user and password that were
verified before, so a fast answer tells nothing to someone who does not already
hold the password; failures are never cached.

Bounded CPU: checks that are not cache hits (real or dummy bcrypt) run under a
process-wide semaphore of max(1, cpu_count // 2) slots. A request that gets no
slot within SLOT_WAIT seconds is answered 429 with Retry-After: 1, unchecked and
not counted as a failure, so guesses from many addresses cannot starve the
server; cache hits never wait for a slot.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import bcrypt
import falcon

from commissaire import errors
from commissaire.config import ConfigError
from commissaire.identity import Identity, Role
from commissaire_http.authentication import Authenticator

BCRYPT_MAX_BYTES = 72
SLOT_WAIT = 0.5
# Process-wide (all plugin instances): bcrypt holds a core for ~0.25 s per check.
_SLOTS = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) // 2))
CACHE_LIMIT = 4096
DEFAULT_COST = 12


def _cost(hashed: str) -> int | None:
    """The cost of a "$2b$12$..." hash, None when it is not one."""
    parts = hashed.split("$")
    if len(parts) == 4 and parts[2].isdecimal() and parts[2].isascii():
        return int(parts[2])
    return None


def _read_users(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"httpbasicauth: cannot read users file {path}: {exc}") from None
    return _checked(data, path)


ROLES = {r.value for r in Role}


def _checked(users: object, where: str) -> dict[str, Any]:
    if not isinstance(users, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("hash"), str) for v in users.values()):
        raise ConfigError(f'httpbasicauth: {where} must map user names to {{"hash": "..."}}')
    for user, record in users.items():
        if "role" in record and record["role"] not in ROLES:
            raise ConfigError(f"httpbasicauth: {where}: user {ascii(user)[:80]}: role "
                              f"{ascii(record['role'])[:40]} is not a role (one of: "
                              f"{', '.join(sorted(ROLES))})")
    return users


class HTTPBasicAuth(Authenticator):
    def __init__(self, filepath: str | None = None, users: dict[str, Any] | None = None) -> None:
        if filepath is None and users is None:
            raise ConfigError("httpbasicauth: needs filepath or users")
        self.filepath = filepath
        self.inline = _checked(users, "users") if users is not None else {}
        self._file_users: dict[str, Any] = {}
        self._file_stamp: tuple[float, int] | None = None
        self._key = secrets.token_bytes(32)
        self._good: set[bytes] = set()
        self._lock = threading.Lock()
        self._dummy: bytes = b""
        self._users()

    def _users(self) -> dict[str, Any]:
        """Inline users plus the file's, re-read when the file changes."""
        if self.filepath:
            stat = os.stat(self.filepath)
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._file_stamp:
                users = _read_users(self.filepath)
                with self._lock:
                    self._file_users, self._file_stamp = users, stamp
                    self._good.clear()
        users = {**self._file_users, **self.inline}
        self._refresh_dummy(users)
        return users

    def _refresh_dummy(self, users: dict[str, Any]) -> None:
        """A hash of a random password at the highest cost among the users'."""
        costs = [c for c in (_cost(r["hash"]) for r in users.values()) if c is not None]
        cost = min(max(costs, default=DEFAULT_COST), 31)
        if _cost(self._dummy.decode()) != cost:
            self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(max(cost, 4)))

    def _decode(self, req: falcon.Request) -> tuple[str, str] | None:
        header = req.get_header("Authorization") or ""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            # (H2) Unusable credentials are a 401 with the challenge, like wrong ones
            # (RFC 7617; schemathesis counts any Basic value as well-formed).
            return None
        return (user, password) if sep else None

    def claimed_user(self, req: falcon.Request) -> str | None:
        try:
            decoded = self._decode(req)
        except errors.ValidationError:
            return None
        return decoded[0] if decoded else None

    def _token(self, user: str, secret: bytes, record: dict[str, Any]) -> bytes:
        return hmac.new(self._key, user.encode() + b"\0" + secret + b"\0"
                        + record["hash"].encode(), hashlib.sha256).digest()

    def _credentials(self, req: falcon.Request) -> tuple[str, bytes] | None:
        """The user name and the password's bytes, as bcrypt checks them."""
        decoded = self._decode(req)
        return None if decoded is None else (decoded[0], decoded[1].encode("utf-8"))

    def verified(self, req: falcon.Request) -> bool:
        """A cache hit: these exact credentials were verified before (no bcrypt)."""
        credentials = self._credentials(req)
        if credentials is None:
            return False
        user, secret = credentials
        if len(secret) > BCRYPT_MAX_BYTES:
            return False
        try:
            record = self._users().get(user)
        except OSError:
            return False
        return record is not None and self._token(user, secret, record) in self._good

    def declares_roles(self) -> bool:
        try:
            return any("role" in record for record in self._users().values())
        except OSError:
            return False

    def authenticate(self, req: falcon.Request) -> bool:
        """Whether the credentials are a user's (the seed's True/False)."""
        return self._check(req) is not None

    def identify(self, req: falcon.Request) -> Identity | bool:
        """The verified user with its role, or False."""
        user_record = self._check(req)
        if user_record is None:
            return False
        user, record = user_record
        role = record.get("role")
        return self.roles.identity(user, "basic", role=Role(role) if role else None)

    def _check(self, req: falcon.Request) -> tuple[str, dict[str, Any]] | None:
        """The user and its record when the credentials check out."""
        credentials = self._credentials(req)
        if credentials is None:
            return None
        user, secret = credentials
        if len(secret) > BCRYPT_MAX_BYTES:
            raise errors.ValidationError(f"password longer than {BCRYPT_MAX_BYTES} bytes cannot "
                                         "be checked (bcrypt limit)", field="Authorization")
        try:
            record = self._users().get(user)
        except OSError:
            return None
        if record is None:
            with _slot():
                self._check_dummy(secret)
            return None
        token = self._token(user, secret, record)
        if token in self._good:
            return user, record
        with _slot():
            try:
                ok = bcrypt.checkpw(secret, record["hash"].encode())
            except ValueError:
                self._check_dummy(secret)
                return None
        if not ok:
            return None
        with self._lock:
            if len(self._good) >= CACHE_LIMIT:
                self._good.clear()
            self._good.add(token)
        return user, record

    def _check_dummy(self, secret: bytes) -> None:
        """Spend what a real check spends, for a name that has no usable hash."""
        bcrypt.checkpw(secret, self._dummy)


@contextlib.contextmanager
def _slot() -> Iterator[None]:
    """A bcrypt slot, or 429 (Retry-After: 1) when none frees up within SLOT_WAIT."""
    if not _SLOTS.acquire(timeout=SLOT_WAIT):
        raise errors.TooManyRequests("the server is busy checking passwords; retry in 1 s",
                                     retry_after=1)
    try:
        yield
    finally:
        _SLOTS.release()


PluginClass = HTTPBasicAuth
