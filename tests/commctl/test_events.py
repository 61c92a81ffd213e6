"""`commctl events`: the activity stream as a table, json or yaml, filtered, and
followed until interrupted."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from commctl import events
from tests.commctl.conftest import PASSWORD, USER, Commctl, LiveServer


@pytest.fixture
def history(commctl: Commctl, key_file: Path) -> None:
    assert commctl("cluster", "create", "c1").code == 0
    assert commctl("host", "create", "127.0.0.5", "-s", str(key_file), "-c", "c1").code == 0
    assert commctl("cluster", "delete", "nope").code == 4  # a refusal is an entry too


def test_the_table_shows_who_did_what_newest_first(commctl: Commctl, history: None) -> None:
    result = commctl("events")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "SOURCE", "ACTION", "OBJECT", "STATUS",
                                "DETAIL"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("operator", "127.0.0.1", "delete", "cluster/nope", "404"),
        ("operator", "127.0.0.1", "create", "host/127.0.0.5", "201"),
        ("operator", "127.0.0.1", "create", "cluster/c1", "201")]
    assert "cluster 'nope' does not exist" in lines[1]
    assert "ssh_priv_key=******" in lines[2]
    assert "BEGIN OPENSSH" not in result.out


def test_json_and_yaml_are_the_servers_entries(commctl: Commctl, history: None) -> None:
    as_json = commctl("-o", "json", "events", "--object", "host/127.0.0.5")
    entries = json.loads(as_json.out)
    assert [(e["action"], e["object"], e["fields"]) for e in entries] == [
        ("create", {"kind": "host", "key": "127.0.0.5"},
         {"ssh_priv_key": "******", "remote_user": "root", "cluster": "c1"})]
    assert entries[0]["actor"] == {"name": USER, "method": "basic"}
    as_yaml = commctl("events", "-o", "yaml", "--action", "create", "--limit", "1")
    assert [e["object"]["key"] for e in yaml.safe_load(as_yaml.out)] == ["127.0.0.5"]


def test_filters_reach_the_server(commctl: Commctl, history: None) -> None:
    assert commctl("events", "--actor", "nobody").out.strip() == "No events."
    failed = json.loads(commctl("-o", "json", "events", "--since", "1h").out)
    assert len(failed) == 3
    assert json.loads(commctl("-o", "json", "events", "--until", "2000-01-01T00:00:00Z").out) \
        == []
    bad = commctl("events", "--since", "yesterday")
    assert bad.code == 8 and "since" in bad.err
    assert commctl("events", "--action", "explode").code == 2  # argparse knows the actions


def test_relative_times_are_utc_iso() -> None:
    now = _dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=_dt.UTC)
    assert events.when("2h", now) == "2030-01-02T01:04:05Z"
    assert events.when("7d", now) == "2029-12-26T03:04:05Z"
    assert events.when("2030-01-01T00:00:00Z", now) == "2030-01-01T00:00:00Z"


def test_follow_prints_the_latest_then_each_new_entry(
        commctl: Commctl, server: LiveServer, history: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    polls: list[float] = []

    def poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:  # something happens while we follow
            answer = requests.put(f"{server.url}/api/v0/cluster/c2", json={},
                                  auth=(USER, PASSWORD), timeout=10)
            assert answer.status_code == 201
        elif len(polls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(events, "sleep", poll)
    result = commctl("-o", "json", "events", "--follow", "--limit", "2", "--interval", "0.5")
    assert result.code == 130
    shown = [json.loads(line) for line in result.out.splitlines()]
    assert [(e["action"], e["object"]["key"]) for e in shown] == [
        ("create", "127.0.0.5"), ("delete", "nope"), ("create", "c2")]
    assert polls == [0.5, 0.5, 0.5]


def test_follow_as_a_table_prints_one_header(commctl: Commctl, server: LiveServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def poll(_seconds: float) -> None:
        calls.append(1)
        if len(calls) == 1:
            requests.put(f"{server.url}/api/v0/cluster/c3", json={}, auth=(USER, PASSWORD),
                         timeout=10)
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(events, "sleep", poll)
    result = commctl("events", "-f")
    assert result.code == 130
    lines = result.out.splitlines()
    assert lines[0].startswith("TIME") and len(lines) == 2 and "cluster/c3" in lines[1]
    assert commctl("events", "-f", "--until", "1h").code == 2
