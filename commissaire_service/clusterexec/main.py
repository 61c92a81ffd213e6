"""commissaire-clusterexec-service entry point."""
from __future__ import annotations

from commissaire_service.builders import BUILDERS
from commissaire_service.runner import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service(BUILDERS["clusterexec"], argv)
