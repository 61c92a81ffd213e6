"""schemathesis over the served OpenAPI document finds nothing, with and without credentials.

The all-in-one runs on a free loopback port; schemathesis (its CLI, as a user
runs it) reads /api/v0/openapi.json and sends requests to that base URL only,
through every phase (examples, coverage, fuzzing, stateful) with its default
checks: no 5xx, no undeclared method or status code, the `Allow` header, bodies
and headers as documented, requests the document calls valid accepted and
requests it calls invalid refused. Hosts it registers are reached over SSH only
inside 127.0.0.0/8 (the stack's ssh-allowed-networks; names are refused unresolved)
and its container managers nowhere (allowed-urls empty).

Bounded: 15 examples per operation and a fixed seed keep each run well under a
minute on 2 cores (the whole module well under 3 minutes).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.stack import AllInOneStack, running

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
PHASES = "examples,coverage,fuzzing,stateful"
EXAMPLES = 15
SEED = 8
RUN_TIMEOUT = 150


class FuzzedAllInOne(AllInOneStack):
    """The all-in-one, its auth-failure throttle raised: schemathesis sends hundreds
    of bad Authorization headers from one address on purpose, and a throttled
    address would see only 429s (documented, but nothing would be tested)."""

    def server_flags(self) -> list[str]:
        return [*super().server_flags(), "--auth-failure-limit", "1000000"]


@pytest.fixture(scope="module")
def stack() -> Iterator[AllInOneStack]:
    # Nothing leaves loopback: SSH only inside 127.0.0.0/8 (the stack's default) and no
    # container manager API at all, so not even a DNS lookup of a name it made up.
    with running(FuzzedAllInOne(service_config={"containermgr": {"allowed-urls": []}})
                 ) as started:
        yield started


def schemathesis(stack: AllInOneStack, *args: str) -> tuple[int, str, float]:
    assert stack.base_url.startswith("http://127.0.0.1:"), "loopback only"
    argv = [str(SCHEMATHESIS), "run", f"{stack.base_url}/openapi.json",
            "--phases", PHASES, "--max-examples", str(EXAMPLES), "--seed", str(SEED),
            "--no-color", "--request-timeout", "20", "--max-redirects", "0", *args]
    started = time.monotonic()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_PROXY": "*", "no_proxy": "*"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=stack.workdir, env=env)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def summary(output: str) -> str:
    """What a failing assertion shows: the failures and the summary, not every case."""
    return output[-12000:]


@pytest.mark.parametrize("credentials", [True, False], ids=["with-auth", "without-auth"])
def test_schemathesis_finds_no_failure(stack: AllInOneStack, credentials: bool) -> None:
    auth = ["--auth", ":".join(stack.auth)] if credentials else []
    rc, output, seconds = schemathesis(stack, *auth)
    print(f"schemathesis ({'with' if credentials else 'without'} credentials): "
          f"{seconds:.1f} s\n" + output[-1500:])
    generated = re.search(r"(\d+) generated", output)
    # It ran every phase to the summary, over a real number of cases ...
    assert generated is not None and int(generated.group(1)) >= 500, summary(output)
    assert "Operations:       39 selected / 39 total" in output, summary(output)
    # ... and found nothing (schemathesis exits 1 on any failure or error).
    assert rc == 0, summary(output)
