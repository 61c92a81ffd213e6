"""Runs one service as its own process: config, bus, signals.

Every service takes `-c/--config` (default /etc/commissaire/<service>.conf, read
only if present), `--bus-uri` and `--bus-exchange` (overriding the file's
"bus-uri"/"bus-exchange"), and `--threads` (consumers sharing its queue).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from commissaire.bus import BusClient, BusServer
from commissaire.config import ConfigError, load_service_config
from commissaire_service.builders import S, ServiceKind
from commissaire_service.service import Service

logger = logging.getLogger(__name__)


def parse_args(prog: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"commissaire-{prog}-service")
    parser.add_argument("-c", "--config", help=f"JSON config (default /etc/commissaire/{prog}.conf)")
    parser.add_argument("--bus-uri", help="message bus URI (default redis://127.0.0.1:6379/)")
    parser.add_argument("--bus-exchange", help="message bus exchange (default commissaire)")
    parser.add_argument("--threads", type=int, help="consumer threads (default 4)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def bus_servers(service: Service, uri: str, exchange: str, threads: int) -> list[BusServer]:
    """The shared queue of the service, and its private queue when it has one."""
    servers = [BusServer(uri, exchange, service.name, service.routing_keys, service.dispatch,
                         threads=threads)]
    if service.private_routing_keys:
        private = f"{service.name}.{service.instance.replace(':', '-')}"
        servers.append(BusServer(uri, exchange, private, service.private_routing_keys,
                                 service.dispatch, threads=1, private=True))
    return servers


def run_service(kind: ServiceKind[S], argv: list[str] | None = None) -> int:
    prog = kind.name
    args = parse_args(prog, argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_service_config(args.config, f"/etc/commissaire/{prog}.conf")
        settings = kind.checked(config)  # parsed once; ConfigError names the setting
    except ConfigError as exc:
        print(f"commissaire-{prog}-service: {exc}", file=sys.stderr)
        return 2
    uri = args.bus_uri or settings.bus_uri
    exchange = args.bus_exchange or settings.bus_exchange
    threads = args.threads or settings.threads
    client = BusClient(uri, exchange, settings.bus_timeout)
    try:
        service = kind.build(settings, client)
    except (ConfigError, ValueError) as exc:
        print(f"commissaire-{prog}-service: {exc}", file=sys.stderr)
        client.close()
        return 2
    servers = bus_servers(service, uri, exchange, threads)
    server = servers[0]

    def stop(_signal: int, _frame: FrameType | None) -> None:
        for each in servers:
            each.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for each in servers:
        each.start()
    logger.info("%s service serving %s on %s", service.name, service.routing_keys,
                client._safe_uri())
    server.wait()
    service.stop()
    client.close()
    return 0
