"""Session-wide real servers for integration tests.

A missing binary fails the test that needs it (with the install hint) rather
than skipping it: a skipped integration suite looks green and tests nothing.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import EtcdServer, RedisServer, ServerError


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    server = EtcdServer()
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(f"cannot start etcd for integration tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(f"cannot start redis-server for integration tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
