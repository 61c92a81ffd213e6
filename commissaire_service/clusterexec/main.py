"""commissaire-clusterexec-service entry point."""
from __future__ import annotations

from commissaire_service.builders import build_clusterexec
from commissaire_service.runner import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service(build_clusterexec, argv)
