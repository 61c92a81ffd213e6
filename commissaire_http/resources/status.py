"""GET /api/v0/status: health of the server, the bus, the store and each service.

Every service is pinged at once with a short timeout. The answer is 200 while
the server can serve requests (bus, storage service and store up), else 503;
services that do not answer are reported, by name, either way.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import falcon

from commissaire import errors
from commissaire.bus.clients import CLIENTS
from commissaire.models import utcnow
from commissaire_http.resources.base import Bus, Resource, respond

SERVICES = ("storage", "investigator", "watcher", "clusterexec", "containermgr")
_ROUTING = {"containermgr": "container"}


class Status(Resource):
    def __init__(self, bus: Bus, ping_timeout: float = 2.0) -> None:
        super().__init__(bus)
        self.ping_timeout = ping_timeout
        self.started_at = utcnow()

    def _ping(self, service: str) -> dict[str, Any]:
        try:
            client = CLIENTS[_ROUTING.get(service, service)]
            answer = client(self.bus, timeout=self.ping_timeout).ping()
            return {"status": "ok", **{k: v for k, v in answer.items() if k != "status"}}
        except errors.CommissaireError as exc:
            return {"status": "failed", "reason": exc.description, "error": type(exc).__name__}

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            answers = dict(zip(SERVICES, pool.map(self._ping, SERVICES), strict=True))
        storage = answers["storage"]
        bus_down = any(a.get("error") == "BusUnavailable" for a in answers.values())
        bus = {"status": "failed" if bus_down else "ok"}
        if storage["status"] == "ok":
            store = {"status": storage.get("store", "ok")}
        else:
            store = {"status": "unknown" if storage.get("error") != "StoreUnavailable" else "failed",
                     "reason": storage.get("reason", "")}
        essential_ok = not bus_down and storage["status"] == "ok"
        overall = "ok" if all(a["status"] == "ok" for a in answers.values()) else (
            "degraded" if essential_ok else "failed")
        respond(resp, {
            "status": overall,
            "server": {"status": "ok", "started_at": self.started_at},
            "bus": bus,
            "store": store,
            "services": answers,
        }, falcon.HTTP_200 if essential_ok else falcon.HTTP_503)
        if not essential_ok:
            resp.set_header("Retry-After", "5")
