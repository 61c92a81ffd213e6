"""API tokens through commctl: made (printed once, the warning on stderr), listed,
revoked; and commctl authenticating with one from its configuration file or
$COMMCTL_TOKEN, never printing it."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import bcrypt
import pytest

from commctl.exitstatus import ExitStatus
from commissaire.config import ServerConfig
from commissaire_http.app import create_app
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.commctl.conftest import (
    PASSWORD,
    USER,
    Commctl,
    LiveServer,
    _QuietHandler,
    _ThreadingServer,
)
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox


@pytest.fixture
def server() -> Iterator[LiveServer]:
    """The live server of conftest.py, with the bearer-token plugin after basic auth."""
    from wsgiref.simple_server import make_server

    bus, store = DirectBus(), DictStore()
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    users = {USER: {"hash": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}}
    config = ServerConfig(authentication_plugins=[
        {"name": "commissaire_http.authentication.httpbasicauth", "users": users},
        {"name": "commissaire_http.authentication.httpbearerauth"}])
    httpd = make_server("127.0.0.1", 0, create_app(config, bus), server_class=_ThreadingServer,
                        handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{httpd.server_port}", storage, bus, store)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _create(commctl: Commctl, *argv: str) -> str:
    made = commctl("token", "create", *argv)
    assert made.code == 0, made.err
    token = made.out.strip()
    assert token.startswith("cmt_") and made.out == token + "\n"  # the token alone
    assert "shown only this once" in made.err and token not in made.err
    return token


def test_token_create_list_get_revoke(commctl: Commctl) -> None:
    assert commctl("cluster", "create", "c1").code == 0
    token = _create(commctl, "ci", "--role", "operator", "--cluster", "c1",
                    "--expires", "30d")
    listed = commctl("token", "list")
    assert listed.code == 0 and token not in listed.out
    header, row = listed.out.splitlines()
    assert header.split()[:3] == ["NAME", "ROLE", "CLUSTERS"]
    assert row.split()[:3] == ["ci", "operator", "c1"]
    as_json = commctl("-o", "json", "token", "list").json
    assert [t["name"] for t in as_json] == ["ci"] and "digest" not in as_json[0]
    assert as_json[0]["expires_at"] is not None
    shown = commctl("-o", "json", "token", "get", "ci").json
    assert shown["role"] == "operator" and "token" not in shown
    again = commctl("token", "create", "ci", "--role", "viewer")
    assert again.code == ExitStatus.CONFLICT and again.out == ""
    revoked = commctl("token", "revoke", "ci")
    assert (revoked.code, revoked.out) == (0, "Revoked token ci.\n")
    assert commctl("token", "list").out == "No tokens.\n"
    assert commctl("token", "revoke", "ci").code == ExitStatus.NOT_FOUND


def test_token_create_in_json_shows_the_record_and_the_token(commctl: Commctl) -> None:
    made = commctl("-o", "json", "token", "create", "j", "--role", "viewer")
    assert made.code == 0 and made.json["token"].startswith("cmt_")
    assert made.json["name"] == "j" and "digest" not in made.json


def test_token_create_refuses_a_bad_duration_and_role(commctl: Commctl) -> None:
    assert commctl("token", "create", "x", "--role", "viewer", "--expires",
                   "soon").code == ExitStatus.USAGE
    assert commctl("token", "create", "x", "--role", "root").code == ExitStatus.USAGE
    assert commctl("-o", "json", "token", "list").json == []


def test_commctl_authenticates_with_a_token_from_its_file(commctl: Commctl) -> None:
    token = _create(commctl, "reader", "--role", "viewer")
    commctl.configure(endpoint=commctl.server.url, username=None, password=None, token=token)
    assert commctl("-o", "json", "host", "list").json == []
    refused = commctl("cluster", "create", "c2")
    assert refused.code == ExitStatus.AUTH
    assert "admin" in refused.err and token not in refused.err + refused.out


def test_commctl_token_from_the_environment_wins(commctl: Commctl) -> None:
    token = _create(commctl, "env", "--role", "admin")
    commctl.configure(endpoint=commctl.server.url, username=None, password=None)
    assert commctl("cluster", "list", COMMCTL_TOKEN=token).code == 0
    # over the file's credentials, too
    commctl.configure(endpoint=commctl.server.url, token="cmt_nothing")
    assert commctl("cluster", "list", COMMCTL_TOKEN=token).code == 0


def test_a_revoked_or_bad_token_is_refused_without_being_printed(commctl: Commctl) -> None:
    token = _create(commctl, "gone", "--role", "viewer")
    assert commctl("token", "revoke", "gone").code == 0
    commctl.configure(endpoint=commctl.server.url, username=None, password=None, token=token)
    refused = commctl("host", "list")
    assert refused.code == ExitStatus.AUTH
    assert refused.err == "commctl: invalid token\n"
    hostile = "cmt_x\n; id"
    commctl.configure(endpoint=commctl.server.url, username=None, password=None,
                      token=hostile)
    bad = commctl("host", "list")
    assert bad.code == ExitStatus.USAGE and hostile not in bad.err and "; id" not in bad.err
    assert "token" in bad.err


def test_the_token_in_the_file_is_never_shown_by_other_commands(commctl: Commctl) -> None:
    token = _create(commctl, "quiet", "--role", "admin")
    commctl.configure(endpoint=commctl.server.url, username=None, password=None, token=token)
    for argv in (("status",), ("-o", "json", "token", "list"), ("token", "get", "quiet"),
                 ("cluster", "get", "missing")):
        result = commctl(*argv)
        assert token not in result.out + result.err, argv
    assert json.loads(commctl.config.read_text())["token"] == token
