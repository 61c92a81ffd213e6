"""The message bus: JSON-RPC 2.0 over kombu. The only package that imports kombu."""
from commissaire.bus.client import BusClient
from commissaire.bus.server import BusServer

__all__ = ["BusClient", "BusServer"]
