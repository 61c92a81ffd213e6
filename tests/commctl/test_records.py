"""Clusters, networks, container managers and server status through commctl."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from commctl.exitstatus import ExitStatus
from tests.commctl.conftest import Commctl


def test_cluster_lifecycle_table_and_json(commctl: Commctl) -> None:
    created = commctl("cluster", "create", "honeynut")
    assert (created.code, created.out) == (0, "Created cluster honeynut.\n")
    again = commctl("cluster", "create", "honeynut")
    assert again.code == 0 and "already exists" in again.out
    assert commctl("cluster", "list").out == "honeynut\n"
    assert commctl("-o", "json", "cluster", "list").json == ["honeynut"]

    shown = commctl("-o", "json", "cluster", "get", "honeynut").json
    assert shown == {"name": "honeynut", "status": "ok", "network": "default",
                     "container_manager": "", "container_runtime": "",
                     "hosts": {"total": 0, "available": 0, "unavailable": 0}}
    table = commctl("cluster", "get", "honeynut").out
    assert "name:" in table and "honeynut" in table
    assert "hosts: 0 total, 0 available, 0 unavailable" in table

    deleted = commctl("cluster", "delete", "honeynut")
    assert (deleted.code, deleted.out) == (0, "Deleted cluster honeynut.\n")
    missing = commctl("cluster", "get", "honeynut")
    assert missing.code == ExitStatus.NOT_FOUND == 4
    assert missing.err == "commctl: cluster 'honeynut' does not exist\n"


def test_cluster_create_sends_network_and_container_manager(commctl: Commctl) -> None:
    assert commctl("network", "create", "net1").code == 0
    assert commctl("container_manager", "create", "cm1", "trivial").code == 0
    result = commctl("cluster", "create", "-n", "net1", "-m", "cm1", "c1", "-o", "json")
    assert result.code == 0
    assert result.json["network"] == "net1" and result.json["container_manager"] == "cm1"
    # Same name, other settings: the server's 409 is exit status 5.
    conflict = commctl("cluster", "create", "c1")
    assert conflict.code == ExitStatus.CONFLICT == 5
    assert conflict.err.startswith("commctl: ")


def test_cluster_type_is_accepted_and_ignored(commctl: Commctl) -> None:
    result = commctl("cluster", "create", "--type", "kubernetes", "--network", "default", "c2")
    assert result.code == 0
    assert "--type is ignored" in result.err


def test_delete_several_goes_on_after_a_failure(commctl: Commctl) -> None:
    commctl("cluster", "create", "a1")
    commctl("cluster", "create", "a2")
    result = commctl("cluster", "delete", "a1", "nope", "a2")
    assert result.code == ExitStatus.NOT_FOUND
    assert result.out == "Deleted cluster a1.\nDeleted cluster a2.\n"
    assert "nope" in result.err
    assert commctl("-o", "json", "cluster", "list").json == []


def test_network_lifecycle_with_options(commctl: Commctl, tmp_path: Path) -> None:
    options = '{"address": "192.168.152.101:8080"}'
    created = commctl("network", "create", "-t", "flannel_server", "-o", options, "flannel1",
                      "--output", "json")
    assert created.code == 0
    assert created.json == {"name": "flannel1", "type": "flannel_server",
                            "options": {"address": "192.168.152.101:8080"}}
    assert commctl("network", "list").out.split() == ["default", "flannel1"]
    table = commctl("network", "get", "flannel1").out
    assert "options.address: 192.168.152.101:8080" in table
    as_yaml = yaml.safe_load(commctl("-o", "yaml", "network", "get", "flannel1").out)
    assert as_yaml == created.json
    # @FILE reads the options from a file.
    (tmp_path / "opts.json").write_text(options)
    assert commctl("network", "create", "-t", "flannel_server", "-o",
                   f"@{tmp_path / 'opts.json'}", "flannel2").code == 0
    assert commctl("network", "delete", "flannel1", "flannel2").code == 0
    assert commctl("network", "list").out == "default\n"


def test_invalid_input_is_exit_8_with_the_field(commctl: Commctl) -> None:
    result = commctl("network", "create", "-t", "flannel_server", "bad")
    assert result.code == ExitStatus.INVALID == 8
    assert result.err.startswith("commctl: options.address: ")
    bad_json = commctl("network", "create", "-o", "{nope", "bad")
    assert bad_json.code == ExitStatus.USAGE
    assert "not valid JSON" in bad_json.err


def test_container_manager_lifecycle_masks_the_token(commctl: Commctl) -> None:
    options = json.dumps({"server_url": "https://api.example.com:6443", "token": "t0ken"})
    created = commctl("container_manager", "create", "ocp", "kubernetes", options)
    assert (created.code, created.out) == (0, "Created container manager ocp.\n")
    shown = commctl("-o", "json", "container-manager", "get", "ocp").json
    assert shown["type"] == "kubernetes"
    assert shown["options"]["token"] != "t0ken"
    assert commctl("container_manager", "create", "-t", "trivial", "triv").code == 0
    assert commctl("container_manager", "list").out.split() == ["ocp", "triv"]
    assert commctl("container_manager", "create", "x").code == ExitStatus.USAGE
    assert commctl("container_manager", "delete", "ocp").out == "Deleted container manager ocp.\n"
    assert commctl("container_manager", "get", "ocp").code == ExitStatus.NOT_FOUND


def test_server_status_reports_what_is_down(commctl: Commctl) -> None:
    # Only the storage service runs here: the others are reported as failed, the
    # server still serves (200, degraded).
    result = commctl("status")
    assert result.code == 0
    assert result.out.startswith("Commissaire: degraded")
    assert "service storage" in result.out
    data = commctl("-o", "json", "status").json
    assert data["services"]["storage"]["status"] == "ok"
