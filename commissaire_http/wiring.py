"""Builds the app with a real bus client (the server's app factory, run per worker)."""
from __future__ import annotations

import falcon

from commissaire.bus import BusClient
from commissaire.config import ServerConfig
from commissaire_http.app import create_app


def create_app_with_bus(config: ServerConfig) -> falcon.App:
    bus = BusClient(config.bus_uri, config.bus_exchange, config.bus_timeout)
    return create_app(config, bus)
