"""Encryption of secret fields at rest (AES-256-GCM, keys from a file).

Host credentials must never sit in the store in clear text (what the seed's
CPD-101 wanted Custodia for). Each envelope names the key id that sealed it so
keys can be rotated: the key file's first line encrypts, every line decrypts.
The record a secret belongs to is bound as associated data, so an envelope
copied onto another record fails to open. No message here ever carries key
material or plaintext.

A SecretBox made from a key file notices when the file changes (checked at most
once a second, and at once when an envelope names an unknown key id) and uses
the new keys without a restart: rotation is online (see README, "Secrets at
rest"). Nothing here caches plaintext; ExpiringCache bounds how long callers
keep decrypted material.

Usage: python -m commissaire.secrets generate PATH
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from commissaire.errors import SecretsUnavailable

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
RELOAD_CHECK_SECONDS = 1.0  # at most this long before a changed key file is used
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def generate_key_file(path: str) -> str:
    """Create `path` (mode 0600) holding one new random key; its key id.

    Refuses to overwrite: replacing a key file makes every stored secret unreadable.
    """
    kid = secrets.token_hex(4)
    line = f"{kid}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretsUnavailable(f"secrets key file {path} already exists; not overwriting it "
                                 "(secrets stored with it would become unreadable)") from None
    except OSError as exc:
        raise SecretsUnavailable(f"cannot create secrets key file {path}: "
                                 f"{exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(line)
    logger.info("created secrets key file %s with key id %s", path, kid)
    return kid


def _parse(path: str, text: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kid, sep, encoded = line.partition(":")
        if not sep or not _KID.match(kid):
            raise SecretsUnavailable(f"secrets key file {path} is malformed at line {number}: "
                                     "expected KEYID:BASE64_KEY")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise SecretsUnavailable(f"secrets key file {path} is malformed at line {number}: "
                                     f"key {kid} is not {KEY_BYTES} bytes in base64")
        if any(kid == known for known, _ in keys):
            raise SecretsUnavailable(f"secrets key file {path} is malformed at line {number}: "
                                     f"key id {kid} appears twice")
        keys.append((kid, key))
    if not keys:
        raise SecretsUnavailable(f"secrets key file {path} holds no key")
    return keys


class SecretBox:
    """Seals and opens secrets with the keys of one key file."""

    def __init__(self, keys: list[tuple[str, bytes]], source: str = "the key file") -> None:
        if not keys:
            raise SecretsUnavailable(f"{source} holds no key")
        self.source = source
        self._path = ""
        self._signature: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._reload_lock = threading.Lock()
        self._set_keys(keys)

    def _set_keys(self, keys: list[tuple[str, bytes]]) -> None:
        # One assignment: a concurrent encrypt sees the old pair or the new one.
        self._state = (keys[0][0], {kid: AESGCM(key) for kid, key in keys})

    @property
    def current_kid(self) -> str:
        """The key id new envelopes are sealed with (the key file's first line)."""
        self._refresh()
        return self._state[0]

    @property
    def kids(self) -> list[str]:
        self._refresh()
        return list(self._state[1])

    def __repr__(self) -> str:  # never show keys
        return f"SecretBox({self.source!r}, current={self._state[0]!r})"

    @classmethod
    def from_key_file(cls, path: str) -> SecretBox:
        """Load every key of `path`; the first one encrypts. The file is watched."""
        signature, keys = _read_key_file(path)
        box = cls(keys, source=path)
        box._path, box._signature, box._checked = path, signature, time.monotonic()
        return box

    def _refresh(self, force: bool = False) -> None:
        """Use the key file's keys again if it changed (a rotation), at most once a
        second unless forced. A file that cannot be read keeps the keys in use."""
        if not self._path:
            return
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_CHECK_SECONDS:
            return
        with self._reload_lock:
            self._checked = now
            try:
                if _signature(self._path) == self._signature:
                    return
                signature, keys = _read_key_file(self._path)
            except (OSError, SecretsUnavailable) as exc:
                reason = exc.description if isinstance(exc, SecretsUnavailable) else \
                    (exc.strerror or type(exc).__name__)
                logger.error("secrets key file %s changed but cannot be used (%s); "
                             "keeping the keys loaded before", self._path, reason)
                return
            self._set_keys(keys)
            self._signature = signature
            logger.info("secrets key file %s reloaded: key ids %s, sealing with %s",
                        self._path, ", ".join(kid for kid, _ in keys), keys[0][0])

    def encrypt(self, plaintext: str, context: str) -> dict[str, Any]:
        """An envelope of `plaintext` bound to `context` (e.g. "HostCreds/10.0.0.1")."""
        self._refresh()
        kid, keys = self._state
        nonce = os.urandom(NONCE_BYTES)
        sealed = keys[kid].encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return {"kid": kid, "nonce": base64.b64encode(nonce).decode("ascii"),
                "ciphertext": base64.b64encode(sealed).decode("ascii")}

    def decrypt(self, envelope: dict[str, Any], context: str) -> str:
        """The plaintext of an envelope made by encrypt() with the same context."""
        if not isinstance(envelope, dict):
            raise SecretsUnavailable(f"secret for {context} is not an envelope")
        kid = envelope.get("kid")
        self._refresh()
        aead = self._state[1].get(kid) if isinstance(kid, str) else None
        if aead is None and isinstance(kid, str):
            # Sealed by a copy that already uses a newer key file: look at ours now.
            self._refresh(force=True)
            aead = self._state[1].get(kid)
        if aead is None:
            raise SecretsUnavailable(f"secret for {context} was encrypted with key id {kid!r} "
                                     f"which is not in {self.source}")
        try:
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            sealed = base64.b64decode(envelope["ciphertext"], validate=True)
            return aead.decrypt(nonce, sealed, context.encode("utf-8")).decode("utf-8")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            # from None: a decode error can carry plaintext bytes.
            raise SecretsUnavailable(f"secret for {context} is a malformed envelope: "
                                     f"{type(exc).__name__}") from None
        except InvalidTag:
            raise SecretsUnavailable(f"secret for {context} cannot be decrypted with key id "
                                     f"{kid}: wrong key or tampered data") from None


def _signature(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_key_file(path: str) -> tuple[tuple[int, int, int], list[tuple[str, bytes]]]:
    try:
        signature = _signature(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SecretsUnavailable(
            f"secrets key file {path} does not exist; create one with: "
            f"python -m commissaire.secrets generate {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise SecretsUnavailable(f"secrets key file {path} cannot be read: {reason}") from None
    if os.stat(path).st_mode & 0o077:
        logger.warning("secrets key file %s is readable by others than its owner; "
                       "chmod 600 it", path)
    return signature, _parse(path, text)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """A small cache whose entries expire `ttl` seconds after they were made, for
    decrypted material (private keys) that must not stay in memory indefinitely."""

    def __init__(self, ttl: float, maxsize: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._clock = clock
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The cached value of `key`, or make() (cached until it expires)."""
        now = self._clock()
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] > now:
                return found[1]
        value = make()
        with self._lock:
            self._purge(now, room=1)
            self._items[key] = (now + self.ttl, value)
        return value

    def pop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._items)

    def _purge(self, now: float, room: int = 0) -> None:
        for key in [k for k, (expires, _) in self._items.items() if expires <= now]:
            del self._items[key]
        while self._items and len(self._items) + room > self.maxsize:  # oldest first
            del self._items[next(iter(self._items))]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "generate":
        print("usage: python -m commissaire.secrets generate PATH", file=sys.stderr)
        return 2
    try:
        kid = generate_key_file(args[1])
    except SecretsUnavailable as exc:
        print(f"error: {exc.description}", file=sys.stderr)
        return 1
    print(f"created {args[1]} with key id {kid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
