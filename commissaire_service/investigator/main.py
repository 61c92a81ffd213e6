"""commissaire-investigator-service entry point."""
from __future__ import annotations

from commissaire_service.builders import build_investigator
from commissaire_service.runner import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service(build_investigator, argv)
