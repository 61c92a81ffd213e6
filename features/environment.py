"""behave: one control plane per run, in the mode given by `-D mode=allinone|distributed`.

Every scenario starts from an empty store (the default network excepted): what a
scenario creates it finds, and nothing else.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.stack import make_stack, remove  # noqa: E402

# Short enough for the lab scenarios to see the watcher and operations act.
SERVICE_CONFIG = {"watcher": {"interval": 2},
                  "clusterexec": {"gate-timeout": 60, "lease-ttl": 3}}


def before_all(context: Any) -> None:
    mode = context.config.userdata.get("mode", "allinone")
    # A holder, not an attribute a step sets: behave drops what a scenario sets.
    context.labs = []  # the lab, once a lab step started it (features/steps/lab_steps.py)
    context.standins = []  # Kubernetes API stand-ins started by steps
    context.stack = make_stack(mode, service_config=SERVICE_CONFIG)
    context.stack.start()
    context.base = context.stack.base_url


def before_scenario(context: Any, scenario: Any) -> None:
    context.auth = context.stack.auth
    context.response = None
    clean(context.stack.session(), context.base)


def clean(session: Any, base: str) -> None:
    for name in session.get(f"{base}/clusters").json():
        for kind in ("restart", "upgrade", "deploy"):
            session.delete(f"{base}/cluster/{name}/{kind}")
        session.delete(f"{base}/cluster/{name}")
    for host in session.get(f"{base}/hosts").json():
        session.delete(f"{base}/host/{host['address']}")
    for name in session.get(f"{base}/containermanagers").json():
        session.delete(f"{base}/containermanager/{name}")
    for name in session.get(f"{base}/networks").json():
        if name != "default":
            session.delete(f"{base}/network/{name}")


def after_all(context: Any) -> None:
    stack = getattr(context, "stack", None)
    if stack is not None:
        failed = context.failed if hasattr(context, "failed") else False
        if failed:
            print(stack.logs(), file=sys.stderr)
        stack.stop()
        remove(stack)
    for lab in getattr(context, "labs", []):
        lab.close()
    for standin in getattr(context, "standins", []):
        standin.stop()
