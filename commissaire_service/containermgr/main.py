"""commissaire-containermgr-service entry point."""
from __future__ import annotations

from typing import Any

from commissaire.bus import BusClient
from commissaire_service.placeholders import SERVICES
from commissaire_service.runner import run_service
from commissaire_service.service import Service


def build(config: dict[str, Any], bus: BusClient) -> Service:
    return SERVICES["containermgr"]()


def main(argv: list[str] | None = None) -> int:
    return run_service("containermgr", build, argv)
