"""A small client for the part of the Kubernetes REST API Commissaire uses.

Commissaire needs a handful of calls (nodes, pods on a node, evictions), so it
speaks the REST API with `requests` rather than depending on the official
client and its kubeconfig machinery. OpenShift serves the same core API, so
both container manager types use this client.

Options of a `kubernetes` or `openshift` ContainerManagerConfig:

``server_url`` (or ``apiserver``)
    The API server, e.g. ``https://k8s.example.com:6443``. A trailing ``/api``
    or ``/api/v1`` (with or without a slash) is dropped; any other path prefix
    (an API server behind a path-routing proxy) is kept.
``token``
    Bearer token sent as ``Authorization: Bearer <token>``. Optional. It is
    never logged nor put in an error message.
``certificate_authority``
    CA bundle that signs the API server's certificate: a file path on the
    containermgr host (under its `certificate-dirs`), or the PEM text itself. Default: the bundle `requests`
    trusts (``REQUESTS_CA_BUNDLE`` when set, else certifi's).
``insecure_skip_verify``
    ``true`` to skip verification of the server's certificate (lab use only;
    a warning is logged when the client is built). Default ``false``.
``client_certificate`` / ``client_key``
    Paths (on the containermgr host, under its `certificate-dirs` setting, by
    default /etc/commissaire/containermgr: an API caller cannot make the
    service read, or present, any other file) of a client certificate and its
    key for TLS client authentication. Give both, or only ``client_certificate`` when
    the file holds the key too.
``request_timeout``
    Seconds allowed for each HTTP request (connect and read). Default 10.

As kubectl does, ``HTTPS_PROXY``/``NO_PROXY`` from the environment apply.

Non-2xx answers the callers can act on (404, 409, 405/415, 429) are raised as
`ApiError` subclasses, which never leave the container manager package; the
rest become `ContainerManagerError` right here, in one function.

What an API server answers never reaches an API caller: errors carry a status
code and our own words, and connection failures of any kind (refused, timed
out, reset, not HTTP) read the same, so a server_url cannot be used to probe
ports. The remote text goes to this service's log only (repr-quoted, the token
redacted). Every call first passes the service's `allowed-urls` (see `allow`),
and the socket's peer address is checked again once connected.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from requests.auth import AuthBase
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from commissaire import errors
from commissaire_service.containermgr.allow import AllowedURLs, origin_of

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
#: Where certificate and key files named by options may be (`certificate-dirs`).
DEFAULT_CERTIFICATE_DIRS = ("/etc/commissaire/containermgr",)
_API_SUFFIX = re.compile(r"/api(/v1)?/*$")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)?")

#: A JSON value, as sent to and decoded from an API server.
Json = None | bool | int | float | str | Sequence["Json"] | Mapping[str, "Json"]


@dataclass(frozen=True)
class KubeSettings:
    """How to reach one API server; built from a ContainerManagerConfig's options."""

    #: Scheme, host, port and any proxy path prefix; never ends in "/".
    base_url: str
    #: Bearer token, "" for none.
    token: str = ""
    #: CA file path or PEM text, "" for the system CAs.
    certificate_authority: str = ""
    #: Skip verification of the server's certificate.
    insecure_skip_verify: bool = False
    #: Client certificate path, "" for none.
    client_certificate: str = ""
    #: Client key path, "" when the certificate file holds it.
    client_key: str = ""
    #: Seconds per HTTP request.
    request_timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"KubeSettings(base_url={self.base_url!r}, token={'***' if self.token else ''!r})"

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> KubeSettings:
        """Check the options of a config record; ValidationError names the bad one."""
        url = options.get("server_url") or options.get("apiserver")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise errors.ValidationError(
                "an http(s) URL of the API server is required "
                "(options.server_url or options.apiserver)", field="options.server_url")
        origin_of(url)  # no user information, a valid port
        strings: dict[str, str] = {}
        for name in ("token", "certificate_authority", "client_certificate", "client_key"):
            value = options.get(name) or ""
            if not isinstance(value, str):
                raise errors.ValidationError("must be a string", field=f"options.{name}")
            strings[name] = value
        insecure = options.get("insecure_skip_verify", False)
        if not isinstance(insecure, bool):
            raise errors.ValidationError("must be true or false",
                                         field="options.insecure_skip_verify")
        if strings["client_key"] and not strings["client_certificate"]:
            raise errors.ValidationError("is given without options.client_certificate",
                                         field="options.client_key")
        timeout = options.get("request_timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise errors.ValidationError("must be a positive number of seconds",
                                         field="options.request_timeout")
        return cls(base_url=base_url(url), insecure_skip_verify=insecure,
                   request_timeout=float(timeout), token=strings["token"],
                   certificate_authority=strings["certificate_authority"],
                   client_certificate=strings["client_certificate"],
                   client_key=strings["client_key"])


def base_url(url: str) -> str:
    """`https://h:6443/api/v1/` -> `https://h:6443`; other path prefixes are kept."""
    return _API_SUFFIX.sub("", url.strip()).rstrip("/")


class ApiError(Exception):
    """A non-2xx answer a caller may handle. Internal: never crosses the bus."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {code}")  # the server's words stay in .message (logs only)
        self.code = code
        self.reason = reason
        self.message = message


class ApiNotFound(ApiError):
    """404: the object (or the resource type) does not exist."""


class ApiConflict(ApiError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


class ApiUnsupported(ApiError):
    """405/415: this server does not take this method or patch type."""


class ApiTooManyRequests(ApiError):
    """429: an eviction a PodDisruptionBudget blocks (or plain throttling)."""


_HANDLED: dict[int, type[ApiError]] = {404: ApiNotFound, 409: ApiConflict,
                                       405: ApiUnsupported, 415: ApiUnsupported,
                                       429: ApiTooManyRequests}


class KubeClient:
    """One API server, one `requests` session, a timeout on every request."""

    def __init__(self, settings: KubeSettings, name: str = "",
                 allowed: AllowedURLs | None = None,
                 certificate_dirs: tuple[str, ...] = DEFAULT_CERTIFICATE_DIRS) -> None:
        """`allowed`: the service's allowed-urls (None allows nothing);
        `certificate_dirs`: where files named by options may be."""
        self.settings = settings
        self.name = name
        self.base_url = settings.base_url
        self.allowed = allowed or AllowedURLs()
        self.certificate_dirs = tuple(os.path.realpath(d) for d in certificate_dirs)
        self._session = requests.Session()
        # Direct connections check the peer they reached (DNS rebinding).
        adapter = _CheckedAdapter(self.allowed.peer_check(self.base_url))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept"] = "application/json"
        if settings.token:
            # As session auth, so a ~/.netrc entry cannot replace it.
            self._session.auth = _BearerAuth(settings.token)
        # Passed with each request: a session-wide value loses to REQUESTS_CA_BUNDLE.
        self._verify_with = self._verify(settings)
        if settings.client_certificate:
            self._check_readable(settings.client_certificate, "client_certificate")
            if settings.client_key:
                self._check_readable(settings.client_key, "client_key")
                self._session.cert = (settings.client_certificate, settings.client_key)
            else:
                self._session.cert = settings.client_certificate
        weakref.finalize(self, self._session.close)

    def __repr__(self) -> str:
        return f"KubeClient({self.base_url!r})"

    def _verify(self, settings: KubeSettings) -> bool | str:
        if settings.insecure_skip_verify:
            if self.base_url.startswith("https://"):
                logger.warning("container manager %s: TLS verification of %s is OFF "
                               "(insecure_skip_verify)", self.name, self.base_url)
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            return False
        ca = settings.certificate_authority
        if not ca:
            return True
        if "-----BEGIN" in ca:
            fd, path = tempfile.mkstemp(prefix="commissaire-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as out:
                out.write(ca)
            weakref.finalize(self, _unlink, path)
            return path
        self._check_readable(ca, "certificate_authority")
        return ca

    def _check_readable(self, path: str, option: str) -> None:
        # Where first: a file elsewhere is refused without saying whether it exists.
        real = os.path.realpath(path)
        if not any(real.startswith(d.rstrip("/") + "/") for d in self.certificate_dirs):
            raise errors.ContainerManagerError(
                f"container manager {self.name!r}: options.{option} must name a file under "
                f"{', '.join(self.certificate_dirs) or '(none)'} (the containermgr "
                "service's certificate-dirs setting)")
        if not os.access(real, os.R_OK):
            raise errors.ContainerManagerError(
                f"container manager {self.name!r}: options.{option} names {path!r}, "
                "which this containermgr service cannot read")

    # -- HTTP --------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Mapping[str, Json] | None = None,
                params: dict[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Json]:
        """Send one request; the decoded JSON answer of a 2xx, else raise. The answer
        is an object of unchecked fields: readers check each one they use."""
        self.allowed.check(self.base_url, self.name)
        url = self.base_url + path
        timeout = self.settings.request_timeout
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            response = self._session.request(
                method, url, json=body, params=params, headers=headers,
                verify=self._verify_with, timeout=(min(timeout, 5.0), timeout),
                allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            self._log_failure(method, path, exc)
            verify = "certificate verify failed" in str(exc)
            raise errors.ContainerManagerError(
                f"container manager {self.name!r}: TLS with its API server failed"
                + (": the server's certificate is not trusted (check "
                   "options.certificate_authority)" if verify else "")) from None
        except requests.exceptions.ReadTimeout as exc:
            self._log_failure(method, path, exc)
            raise errors.ContainerManagerError(
                f"container manager {self.name!r}: its API server did not answer "
                f"{method} {path} within {timeout:g} s") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            # Refused, connect timeout, reset, not HTTP: one message (no port probing).
            self._log_failure(method, path, exc)
            raise errors.ContainerManagerError(
                f"container manager {self.name!r}: cannot connect to its API server") from None
        if 200 <= response.status_code < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            return answer if isinstance(answer, dict) else {}
        raise self._error(method, path, response)

    def _log_failure(self, method: str, path: str, exc: BaseException) -> None:
        logger.warning("container manager %s: %s %s%s failed: %r", self.name, method,
                       self.base_url, path, self._redact(_reason(exc)))

    def _error(self, method: str, path: str, response: requests.Response) -> Exception:
        """The one place an HTTP status becomes an exception (no remote text in it)."""
        code = response.status_code
        reason, message = _status_of(response)
        message = self._redact(message)
        handled = _HANDLED.get(code)
        # Answers a caller handles (404, 409, 429...) are routine: debug only.
        logger.log(logging.DEBUG if handled else logging.WARNING,
                   "container manager %s: %s %s%s answered HTTP %d: %r %r", self.name,
                   method, self.base_url, path, code, reason[:100], message[:300])
        if handled is not None:
            return handled(code, reason, message)
        if code in (401, 403):
            return errors.ContainerManagerError(
                f"container manager {self.name!r}: its API server refused our credentials "
                f"(HTTP {code}); check options.token and the client certificate")
        return errors.ContainerManagerError(
            f"container manager {self.name!r}: its API server answered {method} {path} "
            f"with HTTP {code}")

    def _redact(self, text: str) -> str:
        token = self.settings.token
        return text.replace(token, "******") if token else text

    # -- the calls Commissaire makes ----------------------------------------

    def get_node(self, name: str) -> dict[str, Json]:
        return self.request("GET", f"/api/v1/nodes/{_seg(name)}")

    def create_node(self, name: str) -> dict[str, Json]:
        return self.request("POST", "/api/v1/nodes", body={
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})

    def patch_node(self, name: str, patch: Mapping[str, Json]) -> dict[str, Json]:
        """Strategic merge patch, as kubectl cordon sends it."""
        return self.request("PATCH", f"/api/v1/nodes/{_seg(name)}", body=patch,
                            content_type="application/strategic-merge-patch+json")

    def replace_node(self, node: Mapping[str, Json]) -> dict[str, Json]:
        """PUT; 409 (ApiConflict) when metadata.resourceVersion is stale."""
        metadata = node["metadata"]
        if not isinstance(metadata, dict):
            raise TypeError("a node's metadata is an object")
        name = metadata["name"]
        if not isinstance(name, str):
            raise TypeError("a node's name is a string")
        return self.request("PUT", f"/api/v1/nodes/{_seg(name)}", body=node)

    def pods_on_node(self, node: str) -> list[dict[str, Json]]:
        """The pods of a PodList; ContainerManagerError when it is not a list of objects."""
        answer = self.request("GET", "/api/v1/pods",
                              params={"fieldSelector": f"spec.nodeName={node}"})
        items = answer.get("items") or []
        if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
            raise errors.ContainerManagerError(
                f"container manager {self.name!r}: its API server answered the list of "
                f"pods on node {node} with something that is not a list of pods")
        return [p for p in items if isinstance(p, dict)]

    def evict(self, namespace: str, name: str) -> dict[str, Json]:
        """Ask for a pod's eviction (policy/v1); 429 when a disruption budget forbids it."""
        return self.request(
            "POST", f"/api/v1/namespaces/{_seg(namespace)}/pods/{_seg(name)}/eviction",
            body={"apiVersion": "policy/v1", "kind": "Eviction",
                  "metadata": {"name": name, "namespace": namespace}})

    def close(self) -> None:
        self._session.close()


class _BearerAuth(AuthBase):
    """`Authorization: Bearer <token>`; the token stays out of reprs."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(******)"


class _CheckedAdapter(HTTPAdapter):
    """Connection pools whose new sockets must reach an allowed peer address."""

    def __init__(self, peer_ok: Callable[[str], bool]) -> None:
        self._peer_ok = peer_ok
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int,
                         block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: object) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        check = self._peer_ok

        class Http(HTTPConnection):
            def _new_conn(self) -> socket.socket:
                return _checked(self, super()._new_conn(), check)

        class Https(HTTPSConnection):
            def _new_conn(self) -> socket.socket:
                return _checked(self, super()._new_conn(), check)

        class HttpPool(HTTPConnectionPool):
            ConnectionCls = Http

        class HttpsPool(HTTPSConnectionPool):
            ConnectionCls = Https

        self.poolmanager.pool_classes_by_scheme = {"http": HttpPool, "https": HttpsPool}


def _checked(conn: HTTPConnection, sock: socket.socket,
             peer_ok: Callable[[str], bool]) -> socket.socket:
    try:
        peer = str(sock.getpeername()[0])
    except OSError:
        peer = ""
    if not peer_ok(peer):
        sock.close()
        logger.warning("refused a connection to %s (%s): outside allowed-urls",
                       conn.host, peer)
        raise urllib3.exceptions.NewConnectionError(conn, "peer address outside allowed-urls")
    return sock


def _seg(value: str) -> str:
    """One path segment, quoted."""
    return quote(value, safe="")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _status_of(response: requests.Response) -> tuple[str, str]:
    """Reason and message of a Kubernetes Status answer (or of whatever came back)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        message = str(body.get("message") or "")
        causes = (body.get("details") or {}).get("causes") or []
        extra = "; ".join(str(c.get("message")) for c in causes
                          if isinstance(c, dict) and c.get("message"))
        if extra and extra not in message:
            message = f"{message} ({extra})" if message else extra
        return str(body.get("reason") or response.reason or ""), message
    text = " ".join(response.text.split())[:200]
    return str(response.reason or ""), text


def _reason(exc: BaseException) -> str:
    """A short cause of a connection failure, without urllib3's pool chatter."""
    found = _ERRNO.findall(str(exc))
    if found:
        return str(found[-1]).strip()
    text = str(exc)
    for marker in ("certificate verify failed", "Name or service not known",
                   "Connection refused", "tlsv1 alert", "wrong version number"):
        if marker.lower() in text.lower():
            start = text.lower().index(marker.lower())
            cause = text[start:start + 160].split("'")[0].split('"')[0]
            return _SSL_SOURCE.sub("", cause).rstrip(" )")
    return type(exc).__name__
