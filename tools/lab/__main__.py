"""python -m tools.lab up --count N [--first 127.0.100.1] [--dir D] [--port 22] [--reboot-time 2]
                        [--profile lab|debian]
python -m tools.lab build-base [--profile lab|debian]

`up` prints one JSON line per host, {"address", "port", "private_key",
"fingerprint"}, then stays in the foreground until SIGINT or SIGTERM and
cleans everything up."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from tools.lab.base import PROFILES, ensure_base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lab", description="commissaire lab hosts")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start lab hosts and keep them until SIGINT/SIGTERM")
    up.add_argument("--count", type=int, required=True)
    up.add_argument("--first", default=None, help="first address (default: first free from 127.0.100.1)")
    up.add_argument("--port", type=int, default=22)
    up.add_argument("--dir", default=None, help="work dir (default: a temp dir)")
    up.add_argument("--reboot-time", type=float, default=2.0)
    build = commands.add_parser("build-base", help="build the cached base root filesystem only")
    for command in (up, build):
        command.add_argument("--profile", choices=PROFILES, default="lab",
                             help="lab: stand-ins for everything (default); debian: a plain Debian 12 "
                                  "with its real apt-get")
    args = parser.parse_args(argv)

    if args.command == "build-base":
        print(ensure_base(log=lambda msg: print(msg, file=sys.stderr), profile=args.profile))
        return 0

    from tools.lab.lab import Lab

    done = threading.Event()
    # a signal only sets the event: cleanup runs in the main flow, not in a handler
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with Lab(workdir=args.dir, reboot_time=args.reboot_time) as lab:
        for host in lab.start_hosts(args.count, first=args.first, port=args.port, profile=args.profile):
            print(json.dumps({"address": host.address, "port": host.port, "private_key": lab.private_key_path,
                              "fingerprint": host.host_key_fingerprint()}), flush=True)
        while not done.wait(3600):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
