"""Steps that drive `commctl` as an operator would: a subprocess with its own
configuration file (-c FILE) pointing at the running stack.

Each scenario gets a temp dir (made on first use, removed by a cleanup) holding the
configuration and a stand-in private key. In a command line, $KEYFILE is that key's
path; the words are split as a POSIX shell would split them.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from behave import given, then, when

COMMCTL = Path(sys.executable).parent / "commctl"
# The server stores the key and never parses it until it logs in; nothing listens at
# the 127.0.250.x addresses used, so such a host just ends `failed`.
PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nYmVoYXZlLWNvbW1jdGw=\n"
               "-----END OPENSSH PRIVATE KEY-----\n")


def _workdir(context: Any) -> Path:
    if getattr(context, "commctl_dir", None) is None:
        path = Path(tempfile.mkdtemp(prefix="commctl-behave-"))
        context.commctl_dir = path
        context.add_cleanup(shutil.rmtree, str(path), True)
        (path / "id_behave").write_text(PRIVATE_KEY)
        (path / "id_behave").chmod(0o600)
        _configure(context, context.stack.auth[1])
    return Path(context.commctl_dir)


def _configure(context: Any, password: str) -> None:
    # The endpoint is the server's root: commctl adds /api/v0 itself.
    config = {"endpoint": f"http://127.0.0.1:{context.stack.port}",
              "username": context.stack.auth[0], "password": password, "timeout": 30}
    path = Path(context.commctl_dir) / "commctl.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)


def _run(context: Any, line: str) -> subprocess.CompletedProcess:
    work = _workdir(context)
    words = shlex.split(line.replace("$KEYFILE", str(work / "id_behave")))
    env = {"HOME": str(work), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    context.commctl = subprocess.run([str(COMMCTL), "-c", str(work / "commctl.json"), *words],
                                     capture_output=True, text=True, timeout=120, env=env,
                                     stdin=subprocess.DEVNULL)
    return context.commctl


def _shown(context: Any) -> str:
    done = context.commctl
    return (f"commctl {done.args[3:]} exited {done.returncode}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}")


def _json(context: Any) -> Any:
    try:
        return json.loads(context.commctl.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON: {_shown(context)}") from None


def _field(data: Any, name: str) -> Any:
    for part in name.split("."):
        data = data[part]
    return data


@given('commctl is configured with the password "{password}"')
def commctl_password(context: Any, password: str) -> None:
    _workdir(context)
    _configure(context, password)


@given('commctl has run "{line}"')
def commctl_has_run(context: Any, line: str) -> None:
    done = _run(context, line)
    assert done.returncode == 0, _shown(context)


@when('we run commctl "{line}"')
def run_commctl(context: Any, line: str) -> None:
    _run(context, line)


@when("we run commctl with the arguments")
def run_commctl_text(context: Any) -> None:
    _run(context, context.text.strip())


@then("commctl exits with {code:d}")
def commctl_exits(context: Any, code: int) -> None:
    assert context.commctl.returncode == code, _shown(context)


@then('commctl prints "{text}"')
def commctl_prints(context: Any, text: str) -> None:
    assert text in context.commctl.stdout, _shown(context)


@then('commctl prints nothing on stdout')
def commctl_prints_nothing(context: Any) -> None:
    assert context.commctl.stdout == "", _shown(context)


@then('commctl prints a line matching "{pattern}"')
def commctl_matches(context: Any, pattern: str) -> None:
    lines = context.commctl.stdout.splitlines()
    assert any(re.fullmatch(pattern, line) for line in lines), _shown(context)


@then('commctl complains "{text}"')
def commctl_complains(context: Any, text: str) -> None:
    assert context.commctl.stderr.startswith("commctl: "), _shown(context)
    assert text in context.commctl.stderr, _shown(context)


@then('commctl\'s JSON field "{name}" is "{value}"')
def json_field_is(context: Any, name: str, value: str) -> None:
    got = _field(_json(context), name)
    assert str(got) == value, f"{name}: expected {value!r}, got {got!r}\n{_shown(context)}"


@then('commctl\'s JSON field "{name}" is {value:d}')
def json_field_is_number(context: Any, name: str, value: int) -> None:
    got = _field(_json(context), name)
    assert got == value, f"{name}: expected {value!r}, got {got!r}\n{_shown(context)}"


@then('commctl\'s JSON has no field "{name}"')
def json_no_field(context: Any, name: str) -> None:
    assert name not in _json(context), _shown(context)


@then('commctl\'s JSON lists "{items}"')
def json_lists(context: Any, items: str) -> None:
    wanted = sorted(i.strip() for i in items.split(",") if i.strip())
    got = _json(context)
    assert isinstance(got, list), _shown(context)
    names = sorted(g["address"] if isinstance(g, dict) else g for g in got)
    assert names == wanted, f"expected {wanted}, got {names}\n{_shown(context)}"


@then("commctl's JSON is an empty list")
def json_empty(context: Any) -> None:
    assert _json(context) == [], _shown(context)


@then('within {seconds:d} seconds commctl "{line}" shows "{name}" is "{value}"')
def eventually(context: Any, seconds: int, line: str, name: str, value: str) -> None:
    deadline = time.monotonic() + seconds
    got: Any = None
    while time.monotonic() < deadline:
        done = _run(context, line)
        if done.returncode == 0:
            got = _field(json.loads(done.stdout), name)
            if str(got) == value:
                return
        time.sleep(0.5)
    raise AssertionError(f"{name}: expected {value!r}, last {got!r}\n{_shown(context)}")
