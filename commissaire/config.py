"""Configuration of the server (seed chapter 3) and of the services.

The server reads a JSON file with dashed keys (`/etc/commissaire/commissaire.conf`
when it exists, or `-c FILE`; `--no-config-file` skips it), then every flag given
on the command line overrides the file. The all-in-one command takes the same.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from commissaire.identity import Role
from commissaire.rolebindings import RoleBindings

DEFAULT_CONFIG_FILE = "/etc/commissaire/commissaire.conf"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class ServerConfig:
    """The REST server's settings (and the all-in-one's), from the JSON file and
    flags (seed chapter 3), parsed once by load_server_config; each field's file
    key is its name with "-" for "_"."""

    listen_interface: str = "127.0.0.1"
    """address to listen on"""
    listen_port: int = 8000
    """TCP port to listen on"""
    tls_pemfile: str | None = None
    """certificate and key in one PEM file; none: plain HTTP"""
    tls_clientverifyfile: str | None = None
    """CAs that client certificates are verified against (needs tls-pemfile)"""
    authentication_plugins: list[dict[str, Any]] = field(default_factory=list)
    """authentication plugins, tried in order: {"name": module, ...options}"""
    self_auths: list[str] = field(default_factory=list)
    """URI paths that skip authentication (open to anyone)"""
    role_bindings: dict[str, dict[str, str]] = field(default_factory=dict)
    """roles of callers by kind and name: {"users"|"groups"|"certificates"|"tokens":
    {name: role}}; nothing bound anywhere: every authenticated caller is admin"""
    bus_uri: str = "redis://127.0.0.1:6379/"
    """the message bus (kombu URL)"""
    bus_exchange: str = "commissaire"
    """the bus exchange"""
    bus_timeout: float = 10.0
    """seconds a bus call waits before the request gets a 504"""
    trusted_proxies: list[str] = field(default_factory=list)
    """proxies whose X-Forwarded-For is believed for self-registration"""
    workers: int = 2
    """gunicorn worker processes"""
    threads: int = 10
    """request threads per worker; they mostly wait on the bus"""
    data_dir: str = "./var/commissaire"
    """the all-in-one's store and secrets key"""
    page_limit: int = 1000
    """largest page a list answers"""
    max_body_size: int = 1024 * 1024
    """largest request body accepted; larger is 413, never read (commissaire_http.worker)"""
    request_read_timeout: float = 10.0
    """seconds a client has to send a whole request"""
    auth_failure_limit: int = 10
    """failed authentications per client address (and user name) per window, then 429"""
    auth_failure_window: float = 60.0
    """seconds over which failed authentications are counted"""

    def validate(self) -> None:
        """Raise ConfigError for the first unusable setting, checked in field groups."""
        self._validate_numbers()
        self._validate_tls()
        self._validate_lists()

    def _validate_numbers(self) -> None:
        if not 0 < int(self.listen_port) < 65536:
            raise ConfigError(f"listen-port: {self.listen_port} is not a TCP port (1-65535)")
        for name in ("workers", "threads", "page_limit", "max_body_size", "auth_failure_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')}: must be a whole number, at least 1")
        for name in ("request_read_timeout", "auth_failure_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 < value <= 3600:
                raise ConfigError(f"{name.replace('_', '-')}: must be a number of seconds "
                                  "above 0 (at most 3600)")
        if float(self.bus_timeout) <= 0:
            raise ConfigError("bus-timeout: must be a positive number of seconds")

    def _validate_tls(self) -> None:
        for path_key in ("tls_pemfile", "tls_clientverifyfile"):
            path = getattr(self, path_key)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{path_key.replace('_', '-')}: {path} is not a readable file")
        if self.tls_clientverifyfile and not self.tls_pemfile:
            raise ConfigError("tls-clientverifyfile: needs tls-pemfile (client certificates "
                              "are only verified over TLS)")

    def _validate_lists(self) -> None:
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(f"trusted-proxies: {proxy!r} is not an address or "
                                  "network") from None
        for plugin in self.authentication_plugins:
            if not isinstance(plugin, dict) or not isinstance(plugin.get("name"), str):
                raise ConfigError('authentication-plugins: each entry needs a "name" '
                                  "(a module path)")
        for path in self.self_auths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"self-auths: {path!r} is not a URI path")
        self.bindings()
        for plugin in self.authentication_plugins:
            if "role" in plugin and plugin["role"] not in {r.value for r in Role}:
                raise ConfigError(f"authentication-plugins: {plugin['name']}: role "
                                  f"{ascii(plugin['role'])[:40]} is not a role (one of: "
                                  f"{', '.join(r.value for r in Role)})")

    def bindings(self) -> RoleBindings:
        """role-bindings, parsed; ConfigError names the entry at fault."""
        try:
            return RoleBindings.parse(self.role_bindings)
        except ValueError as exc:
            raise ConfigError(f"role-bindings: {exc}") from None

_KEYS = {f.name.replace("_", "-"): f.name for f in fields(ServerConfig)}


def parse_plugin_flag(value: str) -> dict[str, Any]:
    """`module.path:key=value,key=value` (the seed's --authentication-plugin)."""
    name, _, options = value.partition(":")
    name = name.strip()
    if not name:
        raise argparse.ArgumentTypeError("needs a module name: MODULE[:key=value,...]")
    plugin: dict[str, Any] = {"name": name}
    for pair in filter(None, (p.strip() for p in options.split(","))):
        key, sep, val = pair.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{pair!r} is not key=value")
        plugin[key.strip()] = val.strip()
    return plugin


def build_server_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=f"Example: {prog} -c conf/myconfig.json")
    parser.add_argument("-c", "--config", help=f"JSON configuration file "
                                               f"(default {DEFAULT_CONFIG_FILE} if it exists)")
    parser.add_argument("--no-config-file", action="store_true",
                        help="Disregard default configuration file, if it exists")
    parser.add_argument("-i", "--listen-interface", help="Interface to listen on")
    parser.add_argument("-p", "--listen-port", type=int, help="Port to listen on")
    parser.add_argument("--tls-pemfile", help="Full path to the TLS PEM for the commissaire "
                                              "server (certificate and key)")
    parser.add_argument("--tls-clientverifyfile",
                        help="Full path to the TLS file containing the certificate authorities "
                             "that client certificates should be verified against")
    parser.add_argument("--authentication-plugin", action="append", type=parse_plugin_flag,
                        dest="authentication_plugins", metavar="MODULE_NAME:key=value,...",
                        help="Authentication plugin module and configuration (repeatable; "
                             "tried in order)")
    parser.add_argument("--self-auth", action="append", dest="self_auths", metavar="PATH",
                        help="URI paths which provide their own authentication (repeatable)")
    parser.add_argument("--bus-exchange", help="Message bus exchange name")
    parser.add_argument("--bus-uri", help="Message bus connection URI (kombu URL)")
    parser.add_argument("--bus-timeout", type=float, help="Seconds to wait for a service reply")
    parser.add_argument("--trusted-proxy", action="append", dest="trusted_proxies",
                        metavar="ADDRESS", help="Proxy whose X-Forwarded-For is believed for "
                                                "self-registration (repeatable)")
    parser.add_argument("--workers", type=int, help="Server worker processes")
    parser.add_argument("--max-body-size", type=int, metavar="BYTES",
                        help="Largest request body accepted; larger is 413 (default 1048576)")
    parser.add_argument("--request-read-timeout", type=float, metavar="SECONDS",
                        help="Time a client has to send a whole request (TLS handshake, "
                             "head and body) before its connection is closed (default 10)")
    parser.add_argument("--auth-failure-limit", type=int, metavar="COUNT",
                        help="Failed authentications per client address (and per user name) "
                             "within --auth-failure-window before 429 (default 10)")
    parser.add_argument("--auth-failure-window", type=float, metavar="SECONDS",
                        help="Window over which failed authentications are counted (default 60)")
    return parser


def read_json_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid JSON: line {exc.lineno}: "
                          f"{exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a JSON object")
    return data


def load_server_config(args: argparse.Namespace) -> ServerConfig:
    """The file (unless --no-config-file), then flags given on the command line."""
    values: dict[str, Any] = {}
    path = getattr(args, "config", None)
    if path is None and not getattr(args, "no_config_file", False) \
            and os.path.exists(DEFAULT_CONFIG_FILE):
        path = DEFAULT_CONFIG_FILE
    if path and not getattr(args, "no_config_file", False):
        for key, value in read_json_file(path).items():
            attr = _KEYS.get(key) or (key if key in _KEYS.values() else None)
            if attr is None:
                raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
            values[attr] = value
    for attr in _KEYS.values():
        given = getattr(args, attr, None)
        if given is not None:
            values[attr] = given
    try:
        for attr, kind in (("listen_port", int), ("workers", int), ("bus_timeout", float)):
            if attr in values:
                values[attr] = kind(values[attr])
        config = ServerConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    config.validate()
    return config


def load_service_config(path: str | None, default_path: str) -> dict[str, Any]:
    """A service's JSON config: the given file, else the default one if present, else {}."""
    if path:
        return read_json_file(path)
    if os.path.exists(default_path):
        return read_json_file(default_path)
    return {}
