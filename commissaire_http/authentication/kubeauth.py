"""Kubernetes authentication (the seed's "Kubernetes authentication plugin").

A caller sends `Authorization: Bearer <token>`, a token its Kubernetes cluster
issued (a service account's, or the one in the user's kubeconfig, which is what
`commctl` sends). The plugin asks the cluster's TokenReview API who that is
(`POST /apis/authentication.k8s.io/v1/tokenreviews`, with the server's own
credential) and admits the answer's user, with the role `role-bindings` binds
to its user name or groups (Identity method "kubernetes").

Options of the plugin entry:

``server_url``
    The API server, ``https://host[:port]`` (a path prefix is kept). https
    only: the caller's token travels in the request. One explicit URL, named
    by the administrator; redirects are never followed, proxy variables and
    ~/.netrc are ignored (the tokens go to this server and nowhere else).
``certificate_authority``
    Absolute path of the CA bundle that signs the API server's certificate
    (default: the system's). Read when the plugin loads.
``token`` / ``token_file``
    The server's own credential for TokenReview (it needs ``create`` on
    ``tokenreviews``: the system:auth-delegator cluster role). ``token_file``
    (absolute path) is re-read when it changes, as projected service account
    tokens rotate. Never logged nor put in an answer.
``cache_seconds``
    How long an answer, positive or negative, is reused (default 10; 0: ask
    for every request).
``request_timeout``
    Seconds per TokenReview call (default 5).
``audiences``
    Audiences the tokens must be meant for (optional): sent in the review, and
    an answer must name one of them (the docs' advice to audience-aware clients).
``max_concurrent``
    TokenReview calls in flight at once (default 8); a request that gets no
    slot within 0.5 s is 429 with Retry-After, nothing counted.
``user_prefix`` / ``group_prefix``
    Put before the user name and each group (default none), as kube-apiserver's
    --oidc-username-prefix does: with ``k8s:``, role-bindings name
    ``k8s:alice``, and a Kubernetes user cannot take the binding of a users-file
    user of the same name.

A token of the API-token plugin's form (``cmt_...``) is not this plugin's
business: it says nothing and the next plugin answers. A refused token is a
401 counted by the failure throttle; an API server that cannot be reached or
answers something that is not a TokenReview is a 503 (AuthenticationUnavailable,
no failure counted) with our own words; its text goes to the log only.

Why not commissaire_service.containermgr.kube: commissaire_http may not import
commissaire_service, and this needs one POST to one administrator-named URL,
where containermgr calls URLs that API callers name (hence its allowed-urls
and certificate-dirs). The same care is kept here in a few lines: TLS verified,
no redirects, our own error words, tokens redacted, bounded answers.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import falcon
import requests

from commissaire import errors
from commissaire.config import ConfigError
from commissaire.identity import Identity
from commissaire.rolebindings import MAX_NAME
from commissaire_http.authentication.base import Authenticator

logger = logging.getLogger(__name__)

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
API_VERSION = "authentication.k8s.io/v1"
#: The API-token plugin's tokens start so; they are its business, not ours.
API_TOKEN_PREFIX = "cmt_"
METHOD = "kubernetes"
DEFAULT_CACHE_SECONDS = 10.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENT = 8
SLOT_WAIT = 0.5
#: Bounds on what is cached, read and believed.
CACHE_LIMIT = 4096
MAX_ANSWER_BYTES = 1024 * 1024
MAX_TOKEN = 16 * 1024
#: Groups an Identity carries (bound ones first; it travels on the bus per request).
MAX_GROUPS = 100
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: nothing that breaks a header

#: The clock of the cache (tests move it).
monotonic = time.monotonic


@dataclass(frozen=True)
class Review:
    """A definitive TokenReview answer: who the token is, or None (refused)."""

    user: str | None
    groups: tuple[str, ...] = ()


class _Unusable(Exception):
    """The API answered something that is not a usable TokenReview (log text)."""


def _number(name: str, value: object, default: float, minimum: float) -> float:
    if value is None:
        return default
    try:
        number = float(value) if isinstance(value, int | float | str) \
            and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not minimum <= number <= 3600:
        raise ConfigError(f"kubeauth: {name} must be a number of seconds from {minimum:g} "
                          "to 3600")
    return number


def _file(name: str, path: object) -> str:
    """An absolute path to a readable regular file (no relative path, no device)."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ConfigError(f"kubeauth: {name} must be an absolute file path")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"kubeauth: {name}: {path} is not a readable file")
    return path


def _server_url(url: object) -> str:
    if not isinstance(url, str):
        raise ConfigError("kubeauth: server_url (https://host[:port]) is required")
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        parts = None  # type: ignore[assignment]
    if parts is None or parts.scheme != "https" or not parts.hostname \
            or parts.username is not None or parts.password is not None \
            or parts.query or parts.fragment:
        raise ConfigError("kubeauth: server_url must be an https://host[:port] URL, without "
                          "user information, query or fragment (the callers' tokens are "
                          "sent there)")
    return url.strip().rstrip("/")


def _usable_name(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and name.isprintable()


class KubernetesAuth(Authenticator):
    def __init__(self, server_url: str | None = None, certificate_authority: str | None = None,
                 token: str | None = None, token_file: str | None = None,
                 cache_seconds: object = None, request_timeout: object = None,
                 audiences: object = None, max_concurrent: object = None,
                 user_prefix: str = "", group_prefix: str = "") -> None:
        self.url = _server_url(server_url) + REVIEW_PATH
        self._verify: bool | str = True
        if certificate_authority:
            self._verify = _file("certificate_authority", certificate_authority)
        if bool(token) == bool(token_file):
            raise ConfigError("kubeauth: give the server's own credential as token or as "
                              "token_file (one of them)")
        self._token = ""
        self._token_file = _file("token_file", token_file) if token_file else None
        self._token_stamp: tuple[float, int] | None = None
        if token is not None:
            if not isinstance(token, str) or not _TOKEN.fullmatch(token.strip()):
                raise ConfigError("kubeauth: token must be printable ASCII without spaces")
            self._token = token.strip()
        self._own_token()  # a token file that cannot be used fails at start
        self.cache_seconds = _number("cache_seconds", cache_seconds, DEFAULT_CACHE_SECONDS, 0)
        self.timeout = _number("request_timeout", request_timeout, DEFAULT_TIMEOUT, 0.1)
        self.audiences = self._audiences(audiences)
        if not all(isinstance(p, str) and (p == "" or _usable_name(p))
                   for p in (user_prefix, group_prefix)):
            raise ConfigError("kubeauth: user_prefix and group_prefix must be printable text")
        self.user_prefix, self.group_prefix = user_prefix, group_prefix
        slots = int(_number("max_concurrent", max_concurrent, DEFAULT_CONCURRENT, 1))
        self._slots = threading.BoundedSemaphore(slots)
        self._key = secrets.token_bytes(32)
        self._cache: collections.OrderedDict[bytes, tuple[float, Review]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()
        self._session = requests.Session()
        # No HTTPS_PROXY, no ~/.netrc, no REQUESTS_CA_BUNDLE: tokens go to server_url only.
        self._session.trust_env = False

    def __repr__(self) -> str:  # the credential stays out of logs and tracebacks
        return f"KubernetesAuth({self.url!r})"

    @staticmethod
    def _audiences(value: object) -> tuple[str, ...]:
        if value is None or value == "":
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(a, str) and a for a in items):
            raise ConfigError("kubeauth: audiences must be a list of non-empty strings")
        return tuple(items)

    def _own_token(self) -> str:
        """The server's credential; a token file is re-read when it changes."""
        if self._token_file is None:
            return self._token
        try:
            stat = os.stat(self._token_file)
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._token_stamp:
                with open(self._token_file, encoding="ascii") as handle:
                    text = handle.read(MAX_TOKEN + 1).strip()
                if not _TOKEN.fullmatch(text) or len(text) > MAX_TOKEN:
                    raise ValueError("not a token")
                self._token, self._token_stamp = text, stamp
        except (OSError, ValueError) as exc:
            if self._token_stamp is None:
                raise ConfigError(f"kubeauth: token_file {self._token_file} holds no usable "
                                  f"token ({type(exc).__name__})") from None
            logger.warning("kubeauth: cannot re-read token_file %s (%s); keeping the last "
                           "token", self._token_file, type(exc).__name__)
        return self._token

    # -- what the server asks ----------------------------------------------------

    def _bearer(self, req: falcon.Request) -> str | None:
        """The request's bearer token when it is one for us to check."""
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or token.startswith(API_TOKEN_PREFIX):
            return None
        if len(token) > MAX_TOKEN or not _TOKEN.fullmatch(token):
            return None  # not a token anyone issued: a refusal, never sent on
        return token

    def _key_of(self, token: str) -> bytes:
        # The cache never holds a token: an HMAC with a key of this process.
        return hmac.new(self._key, token.encode(), hashlib.sha256).digest()

    def _cached(self, key: bytes) -> Review | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= monotonic():
                del self._cache[key]
                return None
            return entry[1]

    def verified(self, req: falcon.Request) -> bool:
        token = self._bearer(req)
        if token is None:
            return False
        review = self._cached(self._key_of(token))
        return review is not None and review.user is not None

    def authenticate(self, req: falcon.Request) -> Identity | bool:
        token = self._bearer(req)
        if token is None:
            return False
        review = self._review(token)
        if review.user is None:
            return False
        return self.roles.identity(review.user, METHOD, groups=review.groups)

    def _kept(self, groups: tuple[str, ...]) -> tuple[str, ...]:
        """At most MAX_GROUPS, the ones bound to a role first (so a cut never
        changes the role)."""
        if len(groups) <= MAX_GROUPS:
            return groups
        bound = self.roles.bindings.groups
        ordered = [g for g in groups if g in bound] + [g for g in groups if g not in bound]
        logger.info("kubeauth: a user with %d groups: %d kept, the bound ones first",
                    len(groups), MAX_GROUPS)
        return tuple(ordered[:MAX_GROUPS])

    def _review(self, token: str) -> Review:
        """The answer for `token`, from the cache or from the API.

        Answers, positive and negative, are reused for cache_seconds: a token
        revoked in Kubernetes (or a user removed from a group) keeps its last
        answer here that long. A short TTL is the trade-off: the revocation lag
        stays small while a busy client costs the API server one review per TTL,
        not one per request. Failures to ask are never cached."""
        key = self._key_of(token)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._slot():
            # A burst of one token's requests at expiry: those that waited for a
            # slot find the answer the first one got.
            review = self._cached(key) or self._ask(token)
        if self.cache_seconds > 0:
            with self._lock:
                self._cache[key] = (monotonic() + self.cache_seconds, review)
                self._cache.move_to_end(key)
                while len(self._cache) > CACHE_LIMIT:
                    self._cache.popitem(last=False)
        return review

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=SLOT_WAIT):
            raise errors.TooManyRequests("the server is busy checking tokens; retry in 1 s",
                                         retry_after=1)
        try:
            yield
        finally:
            self._slots.release()

    # -- the TokenReview call ------------------------------------------------------

    def _unavailable(self, why: str, logged: str) -> errors.AuthenticationUnavailable:
        logger.warning("kubeauth: TokenReview at %s: %s", self.url, logged)
        return errors.AuthenticationUnavailable(
            f"bearer tokens cannot be checked now: {why}; retry later")

    def _ask(self, token: str) -> Review:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "TokenReview", "spec": spec}
        own = self._own_token()
        try:
            with self._session.post(self.url, json=body, verify=self._verify, stream=True,
                                    headers={"Authorization": f"Bearer {own}",
                                             "Accept": "application/json"},
                                    timeout=(min(self.timeout, 5.0), self.timeout),
                                    allow_redirects=False) as response:
                data = self._read(response)
                code = response.status_code
        except requests.exceptions.SSLError:
            raise self._unavailable("TLS with the Kubernetes API failed",
                                    "TLS failed (is certificate_authority its CA?)") from None
        except requests.exceptions.Timeout:
            raise self._unavailable("the Kubernetes API did not answer in time",
                                    f"no answer within {self.timeout:g} s") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise self._unavailable("the Kubernetes API cannot be reached",
                                    f"cannot connect ({type(exc).__name__})") from None
        if code in (401, 403):
            raise self._unavailable("the Kubernetes API refused this server's credential",
                                    f"HTTP {code}: check token/token_file and that it may "
                                    "create tokenreviews (system:auth-delegator)")
        if not 200 <= code < 300:
            raise self._unavailable("the Kubernetes API answered with an error",
                                    f"HTTP {code} (redirects are not followed)")
        try:
            return self._parse(data)
        except _Unusable as exc:
            raise self._unavailable("the Kubernetes API's answer is not a TokenReview",
                                    str(exc)) from None

    @staticmethod
    def _read(response: requests.Response) -> object:
        """The JSON answer, at most MAX_ANSWER_BYTES read; None when unreadable."""
        data = b""
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) > MAX_ANSWER_BYTES:
                return None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None

    def _parse(self, data: object) -> Review:
        """A definitive answer from a TokenReview; _Unusable for any other shape.
        The answer echoes the token back: it is never logged."""
        if not isinstance(data, dict) or data.get("kind") != "TokenReview" \
                or data.get("apiVersion") != API_VERSION:
            raise _Unusable("the answer is not an authentication.k8s.io/v1 TokenReview")
        status = data.get("status", {})
        if not isinstance(status, dict):
            raise _Unusable("status is not an object")
        authenticated = status.get("authenticated", False)  # false is omitted (omitempty)
        if not isinstance(authenticated, bool):
            raise _Unusable("status.authenticated is not true or false")
        if not authenticated:
            error = status.get("error")
            logger.debug("kubeauth: token refused: %s",
                         ascii(error)[:200] if isinstance(error, str) else "(no reason)")
            return Review(None)
        user = status.get("user")
        if not isinstance(user, dict):
            raise _Unusable("status.user is not an object")
        name, groups = user.get("username"), user.get("groups", [])
        if not isinstance(name, str):
            raise _Unusable("status.user.username is not a string")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise _Unusable("status.user.groups is not a list of strings")
        name = self.user_prefix + name
        if not _usable_name(name):
            logger.warning("kubeauth: token of user %s refused: an empty name, a name over %d "
                           "characters or with control characters", ascii(name[:80]), MAX_NAME)
            return Review(None)
        if self.audiences:
            audiences = status.get("audiences", [])
            if not isinstance(audiences, list):
                raise _Unusable("status.audiences is not a list")
            if not set(self.audiences) & {a for a in audiences if isinstance(a, str)}:
                logger.info("kubeauth: token of user %s refused: not meant for audiences %s",
                            ascii(name), ", ".join(self.audiences))
                return Review(None)
        # Group names that no binding could name (control characters, too long) are dropped.
        usable = (self.group_prefix + g for g in groups)
        return Review(name, self._kept(tuple(dict.fromkeys(g for g in usable if _usable_name(g)))))


PluginClass = KubernetesAuth
