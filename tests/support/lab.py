"""What lab-host tests and behave steps share: watching hosts go down, reading
their reboot requests, and a registration sent from inside a host."""
from __future__ import annotations

import base64
import json
import threading
from typing import Any

from tools.lab import LabHost

REBOOT_COMMANDS = ("reboot", "shutdown")


class DownMonitor:
    """Samples the hosts every 50 ms; remembers the most down at once."""

    def __init__(self, hosts: list[LabHost]) -> None:
        self.hosts = hosts
        self.max_down = 0
        self.ever_down: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            down = [h.address for h in self.hosts if not h.is_up()]
            self.ever_down.update(down)
            self.max_down = max(self.max_down, len(down))

    def stop(self) -> int:
        """Stop sampling; the most hosts seen down at once."""
        self._stop.set()
        self._thread.join()
        return self.max_down


def reboots(host: LabHost, since: float) -> list[dict[str, Any]]:
    """The reboot requests the host's stand-ins recorded since `since` (epoch s)."""
    return [r for r in host.requests() if r["time"] >= since and (
        r["cmd"] in REBOOT_COMMANDS or (r["cmd"] == "systemctl" and "reboot" in r["argv"]))]


def register_from_inside(host: LabHost, port: int, auth: tuple[str, str],
                         body: dict[str, Any]) -> str:
    """PUT /api/v0/host from inside the host, with no address, as its first boot
    would; what came back ("201 {...}")."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    script = (
        "import http.client, sys\n"
        f"c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10,"
        f" source_address=('{host.address}', 0))\n"
        f"c.request('PUT', '/api/v0/host', body=sys.stdin.read(),"
        f" headers={{'Authorization': 'Basic {token}', 'Content-Type': 'application/json'}})\n"
        "r = c.getresponse(); print(r.status, r.read().decode())\n")
    done = host.run(f"python3 -c \"{script}\" <<'EOF'\n{json.dumps(body)}\nEOF")
    return done.stdout + done.stderr
