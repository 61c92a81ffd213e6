"""kombu's Redis transport without a new redis client per operation.

kombu's Redis channel builds a fresh `redis.Redis` for every publish, ack and
queue operation; with redis-py 8 each construction costs ~0.5 ms of CPU (it
rebuilds a 170-entry response-callback table), eight times per bus call: ~4 ms
of CPU per round trip on this machine. A `redis.Redis` over a connection pool is
thread-safe and reusable, so this channel keeps one per channel.
"""
from __future__ import annotations

import urllib.parse

from kombu import Connection
from kombu.transport import redis as kombu_redis
from redis import Redis


class Channel(kombu_redis.Channel):
    _sync_client: Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> Redis:
        if asynchronous:
            client: Redis = super()._create_client(asynchronous=True)
            return client
        if self._sync_client is None:
            self._sync_client = super()._create_client()
        return self._sync_client


class Transport(kombu_redis.Transport):
    Channel = Channel


_AUTH_MARKERS = ("NOAUTH", "WRONGPASS", "invalid username-password", "AuthenticationError",
                 "Authentication required")


def failure(exc: BaseException) -> str:
    """Why a broker connection failed, in words without the URI or its password:
    refused credentials are named as such (an operator's first question)."""
    seen: BaseException | None = exc
    for _ in range(10):  # walk the cause chain kombu wraps around redis' error
        if seen is None:
            break
        text = f"{type(seen).__name__} {seen}"
        if any(marker in text for marker in _AUTH_MARKERS):
            return "the broker refused our credentials (check the user and password in bus-uri)"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def connect(uri: str) -> Connection:
    """A kombu connection to `uri`, with the cached-client channel for redis:// and
    rediss:// (Redis over TLS: `rediss://user:password@host:port/0?ssl_cert_reqs=required
    &ssl_ca_certs=/path/ca.pem`; ssl_certfile/ssl_keyfile for a client certificate)."""
    if urllib.parse.urlsplit(uri).scheme in ("redis", "rediss"):
        return Connection(uri, transport=Transport)
    return Connection(uri)
