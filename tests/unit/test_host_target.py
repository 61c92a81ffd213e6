"""One constructor turns a stored host and its credentials into an SSH target
(commissaire.ssh.host_target): the investigator, the watcher and rolling
operations all read a stored key the same, strict, way."""
from __future__ import annotations

import base64

import pytest

from commissaire import errors
from commissaire.ansible import runner
from commissaire.ssh import host_target

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n"
HOST = {"address": "127.0.5.1", "ssh_port": 2222, "ssh_host_key": "ssh-ed25519 AAAAC3Nz"}


def creds(key: str = base64.b64encode(KEY.encode()).decode(), user: str = "core") -> dict[str, str]:
    return {"address": "127.0.5.1", "ssh_priv_key": key, "remote_user": user}


def test_a_stored_host_becomes_its_target() -> None:
    target = host_target(HOST, creds())
    assert (target.address, target.private_key, target.user, target.port, target.host_key) == (
        "127.0.5.1", KEY, "core", 2222, "ssh-ed25519 AAAAC3Nz")
    assert KEY not in repr(target) and KEY not in repr(runner.Target.of(target))


def test_defaults_root_on_port_22_and_no_pinned_key() -> None:
    target = host_target({"address": "127.0.5.2"}, creds(user=""))
    assert (target.user, target.port, target.host_key) == ("root", 22, "")


@pytest.mark.parametrize("stored", ["not base64!", base64.b64encode(b"\xff\xfe").decode(), "",
                                    base64.b64encode(KEY.encode()).decode() + "\n$(id)"])
def test_a_stored_key_that_is_not_base64_text_is_refused_by_name(stored: str) -> None:
    with pytest.raises(errors.SecretsUnavailable) as caught:
        host_target(HOST, creds(stored))
    assert caught.value.description == ("the stored private key of 127.0.5.1 is not a key in "
                                        "base64; register the host again with its key")


def test_the_ansible_target_and_the_probe_target_agree() -> None:
    ssh = host_target(HOST, creds())
    target = runner.Target.of(ssh, {"commissaire_os": "debian"})
    assert target.ssh() == ssh and target.hostvars == {"commissaire_os": "debian"}
