"""HTTP to the Commissaire REST API: endpoint failover and error mapping.

Endpoints are tried in order. Only a failure to connect moves on to the next
one: once a server has answered (even with an error) its answer is the answer,
so a request is never applied twice. The endpoint that answered is tried first
for the rest of the run (a --watch loop keeps talking to it).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from commctl import __version__
from commctl.config import Settings
from commctl.exitstatus import CommctlError, ExitStatus, status_for_http

API = "/api/v0"
CONNECT_TIMEOUT = 5.0


@dataclass
class Answer:
    """A successful answer: the HTTP status (201 created, 200 ok/unchanged) and JSON body."""

    status: int
    data: Any


class ApiError(CommctlError):
    """The server answered with an error; `message` is its description."""

    def __init__(self, message: str, http_status: int, body: Any = None) -> None:
        super().__init__(message, status_for_http(http_status))
        self.http_status = http_status
        self.body = body


def path(*parts: str) -> str:
    """An API path with each part URL-quoted (names come from the command line)."""
    return "/".join(quote(p, safe="") for p in parts)


def _reason(exc: requests.RequestException) -> str:
    """The useful end of requests' long connection error messages."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r"(certificate verify failed[^')\"]*|wrong version number|"
                          r"SSL[A-Z_]*: [^')\"]+)", text)
        return "TLS error: " + (found.group(1) if found else "handshake failed")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    found = re.search(r"\[Errno -?\d+\] ([^')\"]+)", text)
    if found:
        return found.group(1).strip()
    if "Name or service not known" in text or "NameResolutionError" in text:
        return "name not known"
    return type(exc).__name__


def error_message(response: requests.Response) -> tuple[str, Any]:
    """`<description>` from our JSON error body, naming the field when the description
    does not already; a plain HTTP status line for anything else (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("description"):
        message = str(error["description"])
        field = error.get("field")
        if field and not message.startswith(f"{field}:"):
            message = f"{field}: {message}"
    else:
        message = f"HTTP {response.status_code} {response.reason or ''}".strip()
        message += f" from {response.url}"
    if response.status_code >= 500:
        request_id = response.headers.get("X-Request-ID")
        if request_id:
            message += f" (request id {request_id})"
    return message, body


def environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """scheme -> proxy URL, and "no" -> NO_PROXY, from `environ` as urllib reads
    them from os.environ: http_proxy or HTTP_PROXY, the lowercase one winning."""
    found: dict[str, str] = {}
    for name in sorted(environ, key=str.islower):  # uppercase first, lowercase overrides
        if name.lower().endswith("_proxy") and environ[name]:
            found[name[:-len("_proxy")].lower()] = environ[name]
    return found


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY sends `host` direct: *, the name or a domain it is in, or an
    address or network (CIDR) holding it, as requests reads it."""
    host = host.lower()
    for entry in (item.strip().lower().lstrip(".") for item in no_proxy.split(",")):
        if entry and (entry == "*" or host == entry or host.endswith("." + entry)
                      or _in_network(host, entry)):
            return True
    return False


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:  # a name, not an address or network
        return False


class Client:
    """`environ` given: proxies and the CA bundle come from it, not from os.environ
    (requests would read that itself, and ~/.netrc)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None,
                 warn: Callable[[str], None] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json",
                                     "User-Agent": f"commctl/{__version__}",
                                     **settings.headers})
        if settings.basic_auth:
            self.session.auth = settings.basic_auth
        if settings.cert:
            self.session.cert = settings.cert
        self.session.verify = settings.verify
        self._proxies: dict[str, str] | None = None
        if environ is not None:
            self.session.trust_env = False
            self._proxies = environment_proxies(environ)
            if settings.verify is True:
                self.session.verify = (environ.get("REQUESTS_CA_BUNDLE")
                                       or environ.get("CURL_CA_BUNDLE") or True)
        # Outside the CLI (which passes its stderr) failovers are logged.
        self.warn = warn or logging.getLogger("commctl").warning
        self._first = 0  # index of the endpoint to try first

    def _proxies_for(self, url: str) -> dict[str, str] | None:
        """None: requests finds them in os.environ. {} goes direct (NO_PROXY)."""
        if self._proxies is None:
            return None
        if bypasses_proxy(urlsplit(url).hostname or "", self._proxies.get("no", "")):
            return {}
        return {scheme: value for scheme, value in self._proxies.items() if scheme != "no"}

    def request(self, method: str, api_path: str, body: Any = None,
                params: dict[str, str] | None = None,
                allow: tuple[int, ...] = ()) -> Answer:
        """Send to the first endpoint that accepts a connection. Raises ApiError for an
        error status (unless in `allow`), CommctlError(UNREACHABLE) when none connects."""
        headers = {"X-Request-ID": uuid.uuid4().hex}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        endpoints = self.settings.endpoints
        order = list(range(self._first, len(endpoints))) + list(range(self._first))
        failures = []
        for position, index in enumerate(order):
            url = f"{endpoints[index]}{API}/{api_path.lstrip('/')}"
            try:
                response = self.session.request(
                    method, url, data=data, params=params, headers=headers,
                    proxies=self._proxies_for(url),
                    timeout=(CONNECT_TIMEOUT, self.settings.timeout))
            except requests.exceptions.ConnectionError as exc:
                failures.append(f"{endpoints[index]} ({_reason(exc)})")
                if position + 1 < len(order):
                    self.warn(f"cannot connect to {endpoints[index]} ({_reason(exc)}); "
                              f"trying {endpoints[order[position + 1]]}")
                continue
            except requests.exceptions.Timeout:
                raise CommctlError(f"{endpoints[index]} did not answer within "
                                   f"{self.settings.timeout:g} s", ExitStatus.UNREACHABLE) from None
            except requests.exceptions.RequestException as exc:
                raise CommctlError(f"request to {url} failed: {exc}") from None
            self._first = index
            return self._answer(response, allow)
        raise CommctlError("cannot reach any endpoint: " + ", ".join(failures),
                           ExitStatus.UNREACHABLE)

    def _answer(self, response: requests.Response, allow: tuple[int, ...]) -> Answer:
        if response.ok or response.status_code in allow:
            try:
                data = response.json() if response.content.strip() else None
            except ValueError:
                raise CommctlError(f"the server answered {response.url} with something "
                                   "that is not JSON", ExitStatus.SERVER) from None
            return Answer(response.status_code, data)
        message, body = error_message(response)
        raise ApiError(message, response.status_code, body)

    def get(self, api_path: str, params: dict[str, str] | None = None,
            allow: tuple[int, ...] = ()) -> Answer:
        return self.request("GET", api_path, params=params, allow=allow)

    def put(self, api_path: str, body: Any = None) -> Answer:
        return self.request("PUT", api_path, body=body)

    def delete(self, api_path: str) -> Answer:
        return self.request("DELETE", api_path)
