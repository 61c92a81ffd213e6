"""commissaire-allinone: the server and every service in one process.

Same code paths as the distributed mode, other URLs: the bus is kombu's
in-process transport (event-driven, see commissaire.bus.inproc) and the store
is an SQLite file in --data-dir, where the secrets key is created on first run.
Takes the same configuration file and flags as commissaire-server.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from commissaire.bus import BusClient, BusServer
from commissaire.config import (
    ConfigError,
    ServerConfig,
    build_server_parser,
    load_server_config,
    read_json_file,
)
from commissaire.secrets import generate_key_file
from commissaire_service.builders import BUILDERS, check_allinone_storage, check_services_config
from commissaire_service.runner import bus_servers
from commissaire_service.service import Service
from commissaire_service.settings import StorageSettings
from commissaire_service.storage.main import build_storage_service

if TYPE_CHECKING:
    import falcon

logger = logging.getLogger(__name__)

BUS_URI = "inproc://"
#: Services whose calls may wait long (a store, SSH, a container manager's API
#: server up to its request_timeout) get several consumers, as in the distributed
#: mode: one slow container manager must not hold every other cluster's calls.
_SHARED_WORK = ("storage", "investigator", "containermgr")


def storage_config(data_dir: Path) -> dict[str, object]:
    key_file = data_dir / "secrets.key"
    if not key_file.exists():
        generate_key_file(str(key_file))
    return {
        "secrets-key-file": str(key_file),
        "storage-handlers": [{"name": "commissaire.storage.sqlite",
                              "path": str(data_dir / "commissaire.db"), "models": ["*"]}],
    }


def start_services(config: ServerConfig, bus: BusClient,
                   services_config: Mapping[str, Mapping[str, object]] | None = None
                   ) -> list[BusServer]:
    """Start every service on the in-process bus; return their servers."""
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    per_service = services_config or {}
    check_allinone_storage(per_service.get("storage", {}))
    services: list[Service] = [build_storage_service(StorageSettings.parse(
        {**storage_config(data_dir), **per_service.get("storage", {})}, "storage"), bus)]
    services += [build(dict(per_service.get(name, {})), bus) for name, build in BUILDERS.items()]
    servers = []
    for service in services:
        for server in bus_servers(service, BUS_URI, config.bus_exchange,
                                  threads=4 if service.name in _SHARED_WORK else 1):
            server.start()
            servers.append(server)
    for server in servers:
        server.ready.wait(10)
    return servers


def create_allinone_app(config: ServerConfig,
                        services_config: Mapping[str, Mapping[str, object]] | None = None
                        ) -> falcon.App:
    """Runs in the server worker: services as threads, then the REST app."""
    from commissaire_http.app import create_app

    bus = BusClient(BUS_URI, config.bus_exchange, config.bus_timeout)
    start_services(config, bus, services_config)
    return create_app(config, bus)


def _describe_auth(config: ServerConfig) -> str:
    if not config.authentication_plugins:
        return ("no authentication plugin is configured, so every request is refused; "
                "add one, e.g. --authentication-plugin "
                "commissaire_http.authentication.httpbasicauth:filepath=conf/users.json")
    names = ", ".join(p["name"].rsplit(".", 1)[-1] for p in config.authentication_plugins)
    return f"authenticate with: {names}"


def main(argv: list[str] | None = None) -> int:
    parser = build_server_parser(
        "commissaire-allinone",
        "Commissaire all-in-one: REST server and every service in one process "
        "(in-process bus, SQLite store in --data-dir).")
    parser.add_argument("--data-dir", help="where the store and secrets key live "
                                           "(default ./var/commissaire)")
    parser.add_argument("--services-config", metavar="FILE",
                        help='JSON object of per-service settings, e.g. {"watcher": '
                             '{"interval": 10}} (the keys of each service\'s own config file)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_server_config(args)
        services_config = read_json_file(args.services_config) if args.services_config else {}
        check_services_config(services_config)
        from commissaire_http.authentication import announce_roles, build_auth_middleware
        announce_roles(build_auth_middleware(config.authentication_plugins, config.self_auths,
                                             role_bindings=config.bindings()))
    except ConfigError as exc:
        print(f"commissaire-allinone: {exc}", file=sys.stderr)
        return 2
    config = dataclasses.replace(
        config, data_dir=str(Path(args.data_dir or config.data_dir).resolve()))
    from commissaire_http.server import serve

    scheme = "https" if config.tls_pemfile else "http"
    host = f"[{config.listen_interface}]" if ":" in config.listen_interface else \
        config.listen_interface

    def on_ready() -> None:
        print(f"Commissaire all-in-one listening on {scheme}://{host}:{config.listen_port}/api/v0",
              flush=True)
        print(f"Data in {config.data_dir}; {_describe_auth(config)}", flush=True)

    # One worker: the in-process bus and the services live in that worker.
    serve(config, lambda: create_allinone_app(config, services_config), workers=1,
          threads=max(config.threads, 8), on_ready=on_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
