"""commctl passhash: hashes the server's basic auth plugin accepts."""
from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from commctl.exitstatus import ExitStatus
from tests.commctl.conftest import Commctl


def hashed(result_out: str) -> bytes:
    line = result_out.strip()
    assert line.startswith("$2b$")
    return line.encode()


def test_password_option(commctl: Commctl) -> None:
    result = commctl("passhash", "--password", "bad_idea", "--rounds", "4")
    assert result.code == 0
    assert bcrypt.checkpw(b"bad_idea", hashed(result.out))
    assert hashed(result.out).startswith(b"$2b$04$")


def test_file_drops_only_the_final_newline(commctl: Commctl, tmp_path: Path) -> None:
    password_file = tmp_path / "pw.txt"
    password_file.write_text(" spaced pw \n")
    result = commctl("passhash", "-f", str(password_file), "-r", "4")
    assert bcrypt.checkpw(b" spaced pw ", hashed(result.out))
    piped = commctl("passhash", "--file", "-", "-r", "4", stdin="from-stdin\n")
    assert bcrypt.checkpw(b"from-stdin", hashed(piped.out))


def test_stdin_that_is_not_a_terminal_is_read_without_prompt(commctl: Commctl) -> None:
    result = commctl("passhash", "-r", "4", stdin="piped\n")
    assert result.code == 0 and bcrypt.checkpw(b"piped", hashed(result.out))


def test_prompts_twice_on_a_terminal(commctl: Commctl, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["typed", "typed", "one", "other"])
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", getpass)
    result = commctl("passhash", "-r", "4", tty=True)
    assert result.code == 0 and bcrypt.checkpw(b"typed", hashed(result.out))
    assert prompts == ["Password: ", "Password (again): "]
    mismatch = commctl("passhash", "-r", "4", tty=True)
    assert mismatch.code == ExitStatus.ERROR
    assert mismatch.err == "commctl: the passwords typed do not match\n"


def test_refuses_what_bcrypt_cannot_check(commctl: Commctl) -> None:
    assert commctl("passhash", "-p", "x" * 73).code == ExitStatus.USAGE
    assert commctl("passhash", "-p", "").code == ExitStatus.USAGE
    assert commctl("passhash", "-p", "x", "-r", "3").code == ExitStatus.USAGE


def test_the_hash_logs_in(commctl: Commctl, tmp_path: Path) -> None:
    """A hash made by passhash works in the server's users file."""
    from commissaire_http.authentication.httpbasicauth import HTTPBasicAuth

    made = hashed(commctl("passhash", "-p", "opensesame", "-r", "4").out).decode()
    plugin = HTTPBasicAuth(users={"u": {"hash": made}})

    class Request:
        def get_header(self, name: str) -> str:
            import base64
            return "Basic " + base64.b64encode(b"u:opensesame").decode()

    assert plugin.authenticate(Request())  # type: ignore[arg-type]
