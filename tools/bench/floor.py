"""The floor of the API benchmark: falcon under gunicorn doing one bus round trip.

`python -m tools.bench.floor serve --bus-uri URI --port P` runs the HTTP side with
the same gunicorn runner and settings as commissaire-server; `... echo --bus-uri
URI` runs the trivial service it calls. Nothing else happens per request, so the
full stack's GET /api/v0/host/{address} is compared to the cost of the HTTP
server plus one bus call.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import falcon

from commissaire.bus import BusClient, BusServer
from commissaire.config import ServerConfig


class FloorResource:
    def __init__(self, bus: BusClient) -> None:
        self.bus = bus

    def on_get(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        resp.media = self.bus.call("floorecho.echo", {"address": address})


def create_floor_app(config: ServerConfig) -> falcon.App:
    app = falcon.App()
    app.add_route("/floor/{address}", FloorResource(BusClient(config.bus_uri, "commissaire",
                                                              config.bus_timeout)))
    return app


def echo(method: str, params: dict[str, Any], context: dict[str, Any]) -> Any:
    return {"address": params.get("address"), "status": "active"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.floor")
    parser.add_argument("role", choices=["serve", "echo"])
    parser.add_argument("--bus-uri", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    if args.role == "echo":
        server = BusServer(args.bus_uri, "commissaire", "floorecho", ["floorecho.*"], echo,
                           threads=args.threads)
        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        server.start()
        server.wait()
        return 0
    from commissaire_http.server import serve

    config = ServerConfig(listen_interface="127.0.0.1", listen_port=args.port,
                          bus_uri=args.bus_uri)
    serve(config, lambda: create_floor_app(config), workers=args.workers, threads=args.threads,
          on_ready=lambda: print("floor ready", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
