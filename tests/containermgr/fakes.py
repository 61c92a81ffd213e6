"""Test doubles of the container manager tests: a bus that only answers
storage.reveal_container_manager."""
from __future__ import annotations

import copy
import socket
from typing import Any

from commissaire import errors
from commissaire_service.containermgr.allow import AllowedURLs

#: The token the stand-in requires in these tests.
TOKEN = "s3cret-standin-token-5f2b"
#: The stand-ins listen on loopback: the tests' containermgr allowed-urls.
LOOPBACK = AllowedURLs.from_setting(["http://127.0.0.0/8:*", "https://127.0.0.0/8:*"])


class FakeBus:
    """Answers `storage.reveal_container_manager` from a dict of records."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def add(self, name: str, type_name: str, **options: Any) -> str:
        self.records[name] = {"name": name, "type": type_name, "options": options}
        return name

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, request_id: str | None = None) -> Any:
        params = params or {}
        self.calls.append((method, params))
        # The token is only in the revealed record: no other method answers here.
        if method != "storage.reveal_container_manager":
            raise errors.MethodNotFound(f"the fake bus does not answer {method}")
        record = self.records.get(params["name"])
        if record is None:
            raise errors.NotFound(f"container manager {params['name']!r} does not exist")
        return copy.deepcopy(record)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
