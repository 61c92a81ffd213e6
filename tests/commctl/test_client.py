"""Configuration, credentials, endpoint failover and the exit status of each failure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from commctl.cli import main
from commctl.exitstatus import ExitStatus
from tests.commctl.conftest import PASSWORD, USER, Commctl
from tests.support.servers import free_port


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_wrong_password_is_exit_3(commctl: Commctl) -> None:
    commctl.configure(endpoint=commctl.server.url, password="wrong")
    result = commctl("cluster", "list")
    assert result.code == ExitStatus.AUTH == 3
    assert result.err == "commctl: authentication is required: send valid credentials\n"


def test_unreachable_is_exit_7_and_names_every_endpoint(commctl: Commctl) -> None:
    first, second = dead_endpoint(), dead_endpoint()
    commctl.configure(endpoint=[first, second])
    result = commctl("cluster", "list")
    assert result.code == ExitStatus.UNREACHABLE == 7
    assert result.err.splitlines()[-1] == (
        f"commctl: cannot reach any endpoint: {first} (Connection refused), "
        f"{second} (Connection refused)")


def test_a_dead_first_endpoint_fails_over_to_the_next(commctl: Commctl) -> None:
    dead = dead_endpoint()
    commctl.configure(endpoint=[dead, commctl.server.url + "/"])
    created = commctl("cluster", "create", "c1")
    assert created.code == ExitStatus.OK
    assert created.out == "Created cluster c1.\n"
    assert f"cannot connect to {dead}" in created.err
    assert commctl("-o", "json", "cluster", "list").json == ["c1"]


def test_server_errors_are_exit_6(commctl: Commctl) -> None:
    commctl.server.store.available = False
    result = commctl("cluster", "list")
    assert result.code == ExitStatus.SERVER == 6
    assert result.err.startswith("commctl: dict store switched off")
    assert "(request id " in result.err
    status = commctl("-o", "json", "status")
    assert status.code == ExitStatus.SERVER and status.json["status"] == "failed"


def test_usage_errors_are_exit_2(commctl: Commctl) -> None:
    assert commctl("cluster").code == ExitStatus.USAGE
    assert commctl("cluster", "frobnicate").code == ExitStatus.USAGE
    assert commctl("-o", "xml", "cluster", "list").code == ExitStatus.USAGE


def test_every_command_has_help(commctl: Commctl) -> None:
    commands = [[], ["cluster"], ["cluster", "create"], ["cluster", "delete"], ["cluster", "get"],
                ["cluster", "list"], ["host"], ["network"], ["container_manager"], ["passhash"],
                ["user-data"], ["status"]]
    for operation in ("restart", "upgrade", "deploy"):
        commands += [["cluster", operation, verb] for verb in ("start", "status", "abort")]
    for verb in ("create", "delete", "get", "list", "status", "ssh", "join", "unjoin"):
        commands.append(["host", verb])
    for group in ("network", "container_manager"):
        commands += [[group, verb] for verb in ("create", "delete", "get", "list")]
    for argv in commands:
        result = commctl(*argv, "--help")
        assert result.code == 0, argv
        assert result.out.startswith("usage: commctl"), argv
    assert commctl("--version").out.startswith("commctl ")


def test_yaml_output_is_the_server_data(commctl: Commctl) -> None:
    commctl("cluster", "create", "c1")
    as_json = commctl("-o", "json", "cluster", "get", "c1").json
    assert yaml.safe_load(commctl("-o", "yaml", "cluster", "get", "c1").out) == as_json
    # -o after the command works too.
    assert yaml.safe_load(commctl("cluster", "get", "c1", "-o", "yaml").out) == as_json


def test_missing_or_broken_configuration(commctl: Commctl, tmp_path: Path) -> None:
    commctl.config.unlink()
    missing = commctl("cluster", "list")
    assert missing.code == ExitStatus.USAGE
    assert "no configuration file" in missing.err and "-c FILE" in missing.err
    broken = tmp_path / "broken.json"
    broken.write_text("{'endpoint': 'x',}")
    assert "not valid JSON" in commctl("-c", str(broken), "cluster", "list").err
    no_endpoint = tmp_path / "empty.json"
    no_endpoint.write_text("{}")
    result = commctl("-c", str(no_endpoint), "cluster", "list")
    assert result.code == ExitStatus.USAGE and "at least one endpoint" in result.err
    # COMMCTL_CONFIG names the file too.
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"endpoint": commctl.server.url, "username": USER,
                                "password": PASSWORD}))
    assert commctl("cluster", "list", COMMCTL_CONFIG=str(good)).code == 0


def test_missing_password_is_asked_on_a_terminal_only(commctl: Commctl,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    commctl.config.write_text(json.dumps({"endpoint": commctl.server.url, "username": USER}))
    refused = commctl("cluster", "list")
    assert refused.code == ExitStatus.USAGE and "no \"password\"" in refused.err
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("getpass.getpass", getpass)
    assert commctl("cluster", "list", tty=True).code == 0
    assert prompts == [f"Password for {USER}: "]


def test_kubeconfig_user_wins_over_username(commctl: Commctl, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "k", "user": "me"}}],
        "users": [{"name": "other", "user": {"token": "nope"}},
                  {"name": "me", "user": {"username": USER, "password": PASSWORD}}],
    }))
    commctl.configure(endpoint=commctl.server.url, password="wrong", kubeconfig=str(kubeconfig))
    assert commctl("cluster", "list").code == 0
    # A token is sent as a bearer token, which basic auth does not accept.
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"user": "me"}}],
        "users": [{"name": "me", "user": {"token": "abc"}}]}))
    assert commctl("cluster", "list").code == ExitStatus.AUTH
    kubeconfig.write_text(yaml.safe_dump({"current-context": "gone", "contexts": []}))
    result = commctl("cluster", "list")
    assert result.code == ExitStatus.USAGE and "no current context" in result.err


def test_main_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["commctl", "--version"])
    assert main() == 0
    assert capsys.readouterr().out.startswith("commctl ")
