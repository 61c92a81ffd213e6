"""commctl run on an injected Environment: what a user sees comes from it alone.

Every test but the one about from_process runs commctl with sys.stdin, stdout
and stderr and getpass replaced by things that fail when touched, and with
os.environ pointing HOME, COMMCTL_CONFIG, COMMCTL_SSH and the proxies at decoys: a
command that bypassed its Environment would fail or go elsewhere.
"""
from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from commctl import __version__, watch
from commctl.cli import main
from commctl.environment import Environment
from commctl.exitstatus import ExitStatus
from tests.commctl.conftest import PASSWORD, USER, LiveServer, Terminal
from tests.commctl.test_operations import advance, stepper

DEAD = "http://127.0.0.1:9"  # nothing listens: a request sent there fails


class Untouchable:
    """Stands for sys.stdin, sys.stdout or sys.stderr: any use means a bypass."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"commctl used sys.{self.name}.{attribute}")


@dataclass
class Seen:
    """What the user of one run sees."""

    code: int
    out: str
    err: str


@pytest.fixture
def home(tmp_path: Path, server: LiveServer, isolated: None) -> Path:
    """The Environment's home, with a configuration for the live server."""
    path = tmp_path / "home"
    path.mkdir()
    configure(path / ".commissaire.json", server.url)
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """getpass and the process's variables made useless to commctl."""
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    configure(decoy / ".commissaire.json", DEAD)

    def no_getpass(prompt: str) -> str:
        raise AssertionError(f"commctl prompted through getpass: {prompt!r}")

    monkeypatch.setattr("getpass.getpass", no_getpass)
    monkeypatch.setenv("HOME", str(decoy))
    monkeypatch.setenv("COMMCTL_CONFIG", str(decoy / ".commissaire.json"))
    monkeypatch.setenv("COMMCTL_SSH", "/bin/false")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, DEAD)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def untouchable_sys() -> Iterator[None]:
    """sys's streams useless while commctl runs (pytest's capture puts its own back
    between a test's phases, so a fixture could not do this)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("stdin", "stdout", "stderr"):
            patch.setattr(sys, name, Untouchable(name))
        yield


def configure(path: Path, endpoint: str, **settings: Any) -> Path:
    settings = {"endpoint": endpoint, "username": USER, "password": PASSWORD, **settings}
    path.write_text(json.dumps({k: v for k, v in settings.items() if v is not None}))
    return path


def run(*argv: str, environ: dict[str, str], stdin: str = "", **fields: Any) -> Seen:
    """main() on an Environment of StringIOs; `fields` sets its other fields."""
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(stdin), stdout=out, stderr=err, environ=environ,
                      **fields)
    with untouchable_sys():
        code = main(list(argv), env=env)
    return Seen(code, out.getvalue(), err.getvalue())


def variables(home: Path, **more: str) -> dict[str, str]:
    return {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", **more}


def test_answers_go_to_its_stdout_and_errors_to_its_stderr(home: Path) -> None:
    environ = variables(home)
    created = run("cluster", "create", "c1", environ=environ)
    assert (created.code, created.out, created.err) == (0, "Created cluster c1.\n", "")
    listed = run("-o", "json", "cluster", "list", environ=environ)
    assert (listed.code, json.loads(listed.out)) == (0, ["c1"])
    missing = run("cluster", "get", "nope", environ=environ)
    assert (missing.code, missing.out) == (ExitStatus.NOT_FOUND, "")
    assert missing.err.startswith("commctl: ") and "nope" in missing.err


def test_help_version_and_usage_errors_go_to_its_streams(isolated: None) -> None:
    version = run("--version", environ={})
    assert (version.code, version.out, version.err) == (0, f"commctl {__version__}\n", "")
    # A subcommand's own parser prints there too.
    helped = run("cluster", "restart", "start", "--help", environ={})
    assert helped.code == 0 and helped.out.startswith("usage: commctl cluster restart start")
    wrong = run("cluster", "create", environ={})
    assert (wrong.code, wrong.out) == (ExitStatus.USAGE, "")
    assert "error: the following arguments are required: name" in wrong.err
    bad_format = run("-o", "xml", "cluster", "list", environ={})
    assert bad_format.code == ExitStatus.USAGE and "invalid choice: 'xml'" in bad_format.err


def test_its_variables_and_home_decide_the_configuration(home: Path, tmp_path: Path,
                                                         server: LiveServer) -> None:
    assert run("cluster", "list", environ=variables(home)).code == 0
    # Its COMMCTL_CONFIG wins over its HOME: this one has a wrong password.
    wrong = configure(tmp_path / "wrong.json", server.url, password="wrong")
    refused = run("cluster", "list", environ=variables(home, COMMCTL_CONFIG=str(wrong)))
    assert refused.code == ExitStatus.AUTH
    # Without HOME among its variables, `~` is its home field.
    assert run("cluster", "list", environ={}, home=str(home)).code == 0
    homeless = run("cluster", "list", environ={})
    assert homeless.code == ExitStatus.USAGE and "no HOME" in homeless.err


def test_passhash_reads_its_stdin_and_prompts_through_it(home: Path) -> None:
    piped = run("passhash", "--file", "-", "-r", "4", environ={}, stdin="from-env\n")
    assert piped.code == 0 and bcrypt.checkpw(b"from-env", piped.out.strip().encode())
    # stdin not a terminal: its first line, even when a prompt is at hand.
    line = run("passhash", "-r", "4", environ={}, stdin="first\nsecond\n",
               ask_password=lambda prompt: "typed")
    assert bcrypt.checkpw(b"first", line.out.strip().encode())
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    typed = run("passhash", "-r", "4", environ={}, stdin_isatty=True, ask_password=ask)
    assert typed.code == 0 and bcrypt.checkpw(b"typed", typed.out.strip().encode())
    assert prompts == ["Password: ", "Password (again): "]


def test_a_missing_password_is_asked_only_when_its_stdin_is_a_terminal(
        home: Path, server: LiveServer) -> None:
    configure(home / ".commissaire.json", server.url, password=None)
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return PASSWORD

    refused = run("cluster", "list", environ=variables(home), ask_password=ask)
    assert refused.code == ExitStatus.USAGE and "not a terminal" in refused.err
    assert prompts == []
    asked = run("cluster", "list", environ=variables(home), stdin_isatty=True,
                ask_password=ask)
    assert asked.code == 0 and prompts == [f"Password for {USER}: "]


def test_watch_redraws_when_its_stdout_is_a_terminal_and_appends_otherwise(
        home: Path, server: LiveServer, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environ = variables(home)
    run("cluster", "create", "c1", environ=environ)
    for address in ("10.0.0.1", "10.0.0.2"):
        assert run("host", "create", "-c", "c1", address, str(key_file), environ=environ).code == 0

    def watched(kind: str, operation: str, tty: bool) -> Seen:
        steps: list[Callable[[], None]] = [
            lambda: None, lambda: advance(server, kind, {}, status="finished")]
        stepper(monkeypatch, steps)
        assert run("cluster", operation, "start", "c1", environ=environ).code == 0
        return run("cluster", operation, "status", "c1", "--watch", "--interval", "0.01",
                   environ=environ, stdout_isatty=tty)

    terminal = watched("ClusterRestart", "restart", tty=True)
    assert terminal.code == 0 and terminal.out.count(watch.CLEAR) == 3
    log = watched("ClusterUpgrade", "upgrade", tty=False)
    # Only the two different renderings, and no escape codes in a log.
    assert log.code == 0 and watch.CLEAR not in log.out
    assert log.out.count("Upgrade of cluster c1: ") == 2


def test_its_proxy_variables_are_the_ones_used(home: Path) -> None:
    # os.environ's proxies are dead (see `isolated`), and were not used above.
    proxied = run("cluster", "list", environ=variables(home, http_proxy=DEAD))
    assert proxied.code == ExitStatus.UNREACHABLE and "cannot reach" in proxied.err
    for no_proxy in ("127.0.0.1", "localhost,127.0.0.0/8"):
        direct = run("cluster", "list", environ=variables(home, HTTP_PROXY=DEAD,
                                                          NO_PROXY=no_proxy))
        assert direct.code == 0, direct.err


def test_ctrl_c_prints_a_newline_only_when_its_stderr_is_a_terminal(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("commctl.client.Client.request", interrupted)
    on_terminal = run("cluster", "list", environ=variables(home), stderr_isatty=True)
    assert (on_terminal.code, on_terminal.err) == (ExitStatus.INTERRUPTED, "\n")
    in_a_log = run("cluster", "list", environ=variables(home))
    assert (in_a_log.code, in_a_log.err) == (ExitStatus.INTERRUPTED, "")


def test_ssh_gets_its_file_streams_and_variables(home: Path, key_file: Path,
                                                 tmp_path: Path) -> None:
    environ = variables(home)
    assert run("host", "create", "127.0.100.8", str(key_file), environ=environ).code == 0
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text('#!/bin/sh\nread line\necho "ssh: $GREETING, read $line"\n'
                        'echo "ssh complains" >&2\nexit 3\n')
    fake_ssh.chmod(0o755)
    (tmp_path / "in").write_text("hello\n")
    with open(tmp_path / "in", encoding="utf-8") as stdin, \
            open(tmp_path / "out", "w", encoding="utf-8") as stdout, \
            open(tmp_path / "err", "w", encoding="utf-8") as stderr:
        env = Environment(stdin=stdin, stdout=stdout, stderr=stderr,
                          environ={**environ, "COMMCTL_SSH": str(fake_ssh), "GREETING": "hi"})
        with untouchable_sys():
            assert main(["host", "ssh", "127.0.100.8"], env=env) == 3
    assert (tmp_path / "out").read_text() == "ssh: hi, read hello\n"
    assert (tmp_path / "err").read_text() == "ssh complains\n"


def test_from_process_and_the_default_read_this_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out, err, stdin = Terminal(), io.StringIO(), io.StringIO()
    for name, stream in (("stdout", out), ("stderr", err), ("stdin", stdin)):
        monkeypatch.setattr(sys, name, stream)
    monkeypatch.setenv("COMMCTL_CONFIG", "/from/the/process.json")
    env = Environment.from_process()
    assert (env.stdin, env.stdout, env.stderr) == (stdin, out, err)
    assert (env.stdin_isatty, env.stdout_isatty, env.stderr_isatty) == (False, True, False)
    assert env.environ["COMMCTL_CONFIG"] == "/from/the/process.json"
    assert env.password_prompt() is None  # stdin is no terminal
    # A mapping replaces only the variables (how main(argv, {...}) was called before).
    assert Environment.from_process({"A": "1"}).environ == {"A": "1"}
    assert main(["--version"]) == 0 and out.getvalue() == f"commctl {__version__}\n"
    missing = main(["-c", "/nonexistent.json", "cluster", "list"])
    assert missing == ExitStatus.USAGE and err.getvalue().startswith("commctl: no configuration")
