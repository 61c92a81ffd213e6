"""commissaire-server: the REST API under gunicorn.

gunicorn runs the falcon app built by a factory in each worker (so every worker has
its own bus client and reply queue). Threaded workers: each request mostly waits on
the bus. TLS comes from --tls-pemfile (certificate and key in one PEM), client
certificates are verified against --tls-clientverifyfile when given.

The worker class is commissaire_http.worker's: connections are read (TLS
handshake, head, body up to max-body-size) in the worker's poller loop, and a
thread gets a request only once it is whole, so slow or idle clients hold no
thread. HTTP/2 stays off (an HTTP/2 connection would hold a thread for its life).
"""
from __future__ import annotations

import logging
import resource
import ssl
import sys
from collections.abc import Callable
from wsgiref.types import WSGIApplication

from gunicorn.app.base import BaseApplication

from commissaire.config import ConfigError, ServerConfig, build_server_parser, load_server_config
from commissaire_http.worker import worker_class

# Connections each worker keeps open at most (gunicorn's worker_connections);
# past it the oldest connection still sending its request is dropped.
WORKER_CONNECTIONS = 1000


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, object],
                 app_factory: Callable[[], WSGIApplication]) -> None:
        self.options = options
        self.app_factory = app_factory
        super().__init__()

    def load_config(self) -> None:
        # Options this gunicorn does not know (older releases) are dropped, not fatal.
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> WSGIApplication:
        # Request threads mostly wait on the bus; a shorter GIL switch interval
        # (default 5 ms) lets a woken thread answer sooner: lower tail latency.
        sys.setswitchinterval(0.001)
        return self.app_factory()


def gunicorn_options(config: ServerConfig, workers: int, threads: int,
                     on_ready: Callable[[], None] | None) -> dict[str, object]:
    host = f"[{config.listen_interface}]" if ":" in config.listen_interface \
        else config.listen_interface
    options: dict[str, object] = {
        "bind": f"{host}:{config.listen_port}",
        "workers": workers,
        "worker_class": worker_class(config.max_body_size, config.request_read_timeout),
        "threads": threads,
        "worker_connections": WORKER_CONNECTIONS,
        "http_protocols": "h1",
        "http2_cleartext": "off",
        "timeout": max(30, int(config.bus_timeout * 3)),
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "commissaire-server",
        "control_socket_disable": True,
    }
    if on_ready is not None:
        options["when_ready"] = lambda _arbiter: on_ready()
    if config.tls_pemfile:
        options.update(certfile=config.tls_pemfile, keyfile=config.tls_pemfile)
        if config.tls_clientverifyfile:
            options.update(ca_certs=config.tls_clientverifyfile, cert_reqs=ssl.CERT_OPTIONAL)
    return options


def _raise_open_file_limit() -> None:
    """Room for every worker's connections (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WORKER_CONNECTIONS + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def serve(config: ServerConfig, app_factory: Callable[[], WSGIApplication], *, workers: int,
          threads: int, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT."""
    _raise_open_file_limit()
    _Application(gunicorn_options(config, workers, threads, on_ready), app_factory).run()


def main(argv: list[str] | None = None) -> int:
    parser = build_server_parser("commissaire-server", "Commissaire REST server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_server_config(args)
        from commissaire_http.authentication import announce_roles, build_auth_middleware
        announce_roles(build_auth_middleware(config.authentication_plugins, config.self_auths,
                                             role_bindings=config.bindings()))
    except ConfigError as exc:
        print(f"commissaire-server: {exc}", file=sys.stderr)
        return 2
    from commissaire_http.wiring import create_app_with_bus

    scheme = "https" if config.tls_pemfile else "http"
    host = f"[{config.listen_interface}]" if ":" in config.listen_interface \
        else config.listen_interface

    def on_ready() -> None:
        print(f"Commissaire server listening on {scheme}://{host}:{config.listen_port}/api/v0",
              flush=True)

    serve(config, lambda: create_app_with_bus(config), workers=config.workers,
          threads=config.threads, on_ready=on_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
