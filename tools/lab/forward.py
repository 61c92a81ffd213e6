"""Relay extra loopback addresses to one lab host's sshd (Lab.add_addresses).

    python forward.py TARGET_ADDRESS PORT ADDRESS...

Listens on every ADDRESS:PORT, prints "ready" once all are bound, relays each
connection to TARGET_ADDRESS:PORT, and exits when its stdin closes (the lab
that started it closed or died). A connection arriving while the target is
down is reset, as a connection to a powered-off host would be refused.
"""
from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
import sys
import threading

BUFFER = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(target: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(target, port)
    except OSError:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        writer.close()
        return
    await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _serve(target: str, port: int, addresses: list[str]) -> None:
    servers = [await asyncio.start_server(lambda r, w: _relay(target, port, r, w), address, port,
                                          backlog=1024, reuse_address=True)
               for address in addresses]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    target, port, addresses = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per address and per connection
    # stdin closes when the lab closes or dies: go with it
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
    asyncio.run(_serve(target, port, addresses))


if __name__ == "__main__":
    main()
