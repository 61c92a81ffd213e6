"""What one commctl run may take from the world, injected as httpie does.

Commands read their streams, terminal flags, environment variables, home and
password prompt from an Environment instead of sys, os and getpass, so a test
(or a program embedding commctl) can run one with its own and see exactly what a
user would. Environment.from_process() is the real process's, read once when a
run starts.
"""
from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO


def _isatty(stream: TextIO | None) -> bool:
    """A closed or missing stream (a daemon's, pythonw's) is no terminal."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass(frozen=True, kw_only=True)
class Environment:
    """The outside of one run. Past the streams every field defaults to the quiet
    choice (no terminal, no variables, nobody to ask): a test sets what it is about."""

    stdin: TextIO
    """Read by `passhash --file -`, and by passhash when stdin is not a terminal."""

    stdout: TextIO
    """Where answers go: tables, json, yaml, --help, --version, user-data."""

    stderr: TextIO
    """Where `commctl: <message>` errors and warnings go, apart from answers."""

    stdin_isatty: bool = False
    """Whether a password may be prompted for: off a terminal commctl fails rather
    than hang a script waiting for one."""

    stdout_isatty: bool = False
    """--watch redraws one screen on a terminal and prints only changes otherwise,
    so a log of a long upgrade stays readable."""

    stderr_isatty: bool = False
    """After Ctrl-C, a newline puts the shell's prompt off the `^C` line; in a log it
    would be noise."""

    environ: Mapping[str, str] = field(default_factory=dict)
    """The variables commctl reads (COMMCTL_CONFIG, COMMCTL_TOKEN, HOME, COMMCTL_SSH,
    PATH; proxies and the CA bundle for requests) and hands to ssh."""

    home: str | None = None
    """What `~` stands for when `environ` has no HOME (from_process: what
    os.path.expanduser finds), for ~/.commissaire.json and ~ in the configuration."""

    ask_password: Callable[[str], str] | None = None
    """Reads a password without echo, given its prompt; consulted only when
    stdin_isatty. None: nobody to ask."""

    @classmethod
    def from_process(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """This process's streams, terminals, home and getpass, read now; its os.environ
        unless `environ` replaces it."""
        return cls(stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr,
                   stdin_isatty=_isatty(sys.stdin), stdout_isatty=_isatty(sys.stdout),
                   stderr_isatty=_isatty(sys.stderr),
                   environ=os.environ if environ is None else environ,
                   home=os.path.expanduser("~"), ask_password=getpass.getpass)

    def password_prompt(self) -> Callable[[str], str] | None:
        """The prompt when stdin is a terminal; None otherwise, so that a script never
        hangs on one."""
        return self.ask_password if self.stdin_isatty else None
