"""commctl user-data: a valid cloud-config whose register script really registers.

The script is taken out of the generated YAML and run with `sh`, as cloud-init
would run it, against the in-process server; COMMISSAIRE_* variables stand in
for what differs on a real host (its address, the metadata service, the log).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from commctl import userdata
from commctl.exitstatus import ExitStatus
from tests.commctl.conftest import PASSWORD, USER, Commctl
from tests.support.servers import free_port


def generate(commctl: Commctl, key_file: Path, *extra: str) -> dict[str, Any]:
    result = commctl("user-data", "-e", commctl.server.url, "-c", "c1", "-u", USER,
                     "-p", PASSWORD, "-s", str(key_file), *extra)
    assert result.code == 0, result.err
    assert result.out.startswith("#cloud-config\n")
    return yaml.safe_load(result.out)


def register_script(config: dict[str, Any]) -> str:
    (entry,) = [f for f in config["write_files"] if f["path"] == userdata.SCRIPT_PATH]
    assert entry["permissions"] == "0700" and entry["owner"] == "root:root"
    return str(entry["content"])


def need(binary: str, package: str) -> None:
    """CI installs what these tests run: a missing tool fails, never skips (a skipped
    test looks green and checks nothing)."""
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed (Debian: apt-get install {package})",
                    pytrace=False)


def check_schema(text: str, tmp_path: Path) -> None:
    """cloud-init's own schema check of the generated user-data."""
    need("cloud-init", "cloud-init")
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    checked = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid cloud-config" in checked.stdout


def test_user_data_is_valid_cloud_config(commctl: Commctl, key_file: Path,
                                         tmp_path: Path) -> None:
    outfile = tmp_path / "c1.userdata"
    result = commctl("user-data", "-e", commctl.server.url, "-c", "c1", "-u", USER, "-p",
                     PASSWORD, "-s", str(key_file), "-o", str(outfile))
    assert (result.code, result.out) == (0, "")
    assert stat.S_IMODE(outfile.stat().st_mode) == 0o600  # it holds secrets
    text = outfile.read_text()
    assert text.splitlines()[0] == "#cloud-config"
    config = yaml.safe_load(text)
    # The public key (the private key's .pub by default) is authorized for root...
    assert config["ssh_authorized_keys"] == [key_file.with_suffix(".pub").read_text().strip()]
    assert config["disable_root"] is False
    # ... and the script, started in the background, sends the private key.
    script = register_script(config)
    assert script.startswith("#!/bin/sh\n")
    key = base64.b64encode(key_file.read_bytes()).decode()
    assert f"setting COMMISSAIRE_SSH_PRIV_KEY {key}" in script
    assert config["runcmd"] == [["sh", "-c", f"nohup sh {userdata.SCRIPT_PATH} >/dev/null 2>&1 &"]]
    check_schema(text, tmp_path)
    # --script prints the same script alone.
    alone = commctl("user-data", "-e", commctl.server.url, "-c", "c1", "-u", USER, "-p",
                    PASSWORD, "-s", str(key_file), "--script")
    assert alone.out == script


def test_other_remote_user_gets_a_user_entry(commctl: Commctl, key_file: Path,
                                             tmp_path: Path) -> None:
    pub = tmp_path / "keys.pub"
    pub.write_text("# operators\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== a\n\n"
                   "ssh-rsa AAAAB3NzaC1yc2E= b\n")
    result = commctl("user-data", "-e", commctl.server.url, "-r", "admin", "-s", str(key_file),
                     "-a", str(pub), "--ssh-port", "2222", "--address-source", "metadata",
                     "-u", USER, "-p", PASSWORD)
    config = yaml.safe_load(result.out)
    assert "disable_root" not in config and "ssh_authorized_keys" not in config
    assert config["users"] == ["default", {
        "name": "admin", "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== a",
                                                 "ssh-rsa AAAAB3NzaC1yc2E= b"],
        "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/sh"}]
    script = register_script(config)
    assert "setting COMMISSAIRE_REMOTE_USER admin" in script
    assert "setting COMMISSAIRE_SSH_PORT 2222" in script
    assert "setting COMMISSAIRE_ADDRESS_SOURCE metadata" in script
    check_schema(result.out, tmp_path)


def test_without_credentials_the_host_registers_by_its_connection_only(
        commctl: Commctl, key_file: Path) -> None:
    # The server refuses an anonymous registration that names its cluster or address,
    # so user-data that would do so at every boot is refused here, before it is written.
    plain = commctl("user-data", "-e", commctl.server.url, "-s", str(key_file))
    assert plain.code == ExitStatus.OK, plain.err
    script = register_script(yaml.safe_load(plain.out))
    assert "setting COMMISSAIRE_AUTHORIZATION ''" in script
    assert "setting COMMISSAIRE_ADDRESS_SOURCE connection" in script
    with_cluster = commctl("user-data", "-e", commctl.server.url, "-s", str(key_file),
                           "-c", "c1")
    assert with_cluster.code == ExitStatus.USAGE and "-c/--cluster needs credentials" in \
        with_cluster.err
    for source in ("auto", "metadata", "interface", "127.0.100.5"):
        named = commctl("user-data", "-e", commctl.server.url, "-s", str(key_file),
                        "--address-source", source)
        assert named.code == ExitStatus.USAGE and "must be connection" in named.err, source


def test_extends_a_given_cloud_config(commctl: Commctl, key_file: Path, tmp_path: Path) -> None:
    base = tmp_path / "cloud-init.txt"
    base.write_text("#cloud-config\nfinal_message: \"Finished booting\"\n"
                    "runcmd:\n  - [touch, /tmp/first]\n"
                    "write_files:\n  - {path: /etc/motd, content: hello}\n")
    config = generate(commctl, key_file, "-C", str(base))
    assert config["final_message"] == "Finished booting"
    assert config["runcmd"][0] == ["touch", "/tmp/first"] and len(config["runcmd"]) == 2
    assert [f["path"] for f in config["write_files"]] == ["/etc/motd", userdata.SCRIPT_PATH]
    base.write_text("#cloud-config\ndisable_root: true\n")
    refused = commctl("user-data", "-e", "http://x", "-s", str(key_file), "-C", str(base))
    assert refused.code == ExitStatus.USAGE and "disable_root" in refused.err


def test_refuses_what_cannot_work(commctl: Commctl, key_file: Path) -> None:
    pub = str(key_file.with_suffix(".pub"))
    public_as_private = commctl("user-data", "-e", "http://x", "-s", pub)
    assert public_as_private.code == ExitStatus.USAGE and "private key" in public_as_private.err
    private_as_public = commctl("user-data", "-e", "http://x", "-s", str(key_file), "-a",
                                str(key_file))
    assert private_as_public.code == ExitStatus.USAGE
    assert commctl("user-data", "-s", str(key_file)).code == ExitStatus.USAGE  # no endpoint
    assert commctl("user-data", "-e", "ftp://x", "-s", str(key_file)).code == ExitStatus.USAGE
    assert commctl("user-data", "-e", "http://x", "-s", str(key_file), "--address-source",
                   "a b").code == ExitStatus.USAGE
    no_password = commctl("user-data", "-e", "http://x", "-u", "u", "-s", str(key_file))
    assert no_password.code == ExitStatus.USAGE and "not a terminal" in no_password.err
    assert commctl("user-data", "-e", "http://x", "-s", str(key_file), "-c", "bad name"
                   ).code == ExitStatus.USAGE


def test_credentials_from_a_prompt_or_the_configuration(commctl: Commctl, key_file: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    basic = userdata.basic_authorization(USER, PASSWORD)
    monkeypatch.setattr("getpass.getpass", lambda prompt: PASSWORD)
    prompted = commctl("user-data", "-e", "http://x", "-u", USER, "-p", "-s", str(key_file),
                       "--script", tty=True)
    assert f"setting COMMISSAIRE_AUTHORIZATION '{basic}'" in prompted.out
    from_config = commctl("user-data", "--auth-from-config", "-s", str(key_file), "--script")
    assert f"setting COMMISSAIRE_AUTHORIZATION '{basic}'" in from_config.out
    assert f"setting COMMISSAIRE_ENDPOINTS {commctl.server.url}" in from_config.out


# -- the register script, run -------------------------------------------------------

def run_script(script: str, tmp_path: Path, **env: str) -> tuple[int, str]:
    if env.get("COMMISSAIRE_HTTP", "curl") == "curl":
        need("curl", "curl")
    path = tmp_path / "register"
    path.write_text(script)
    log = tmp_path / "register.log"
    log.unlink(missing_ok=True)
    python_dir = os.path.dirname(sys.executable)
    run_env = {"PATH": f"{python_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "COMMISSAIRE_LOG": str(log), "COMMISSAIRE_MAX_TRIES": "1",
               "COMMISSAIRE_RETRY_DELAY": "0", **env}
    done = subprocess.run(["sh", str(path)], env=run_env, capture_output=True, text=True,
                          timeout=60)
    logged = log.read_text() if log.exists() else ""
    assert done.stderr == logged  # everything logged goes to both
    return done.returncode, logged


@pytest.fixture
def made(commctl: Commctl, key_file: Path) -> str:
    assert commctl("cluster", "create", "c1").code == 0
    return register_script(generate(commctl, key_file))


def hosts_of(commctl: Commctl) -> list[dict[str, Any]]:
    return list(commctl("-o", "json", "host", "list", "c1").json)


@pytest.mark.parametrize("http", ["curl", "python3"])
def test_script_registers_the_host_in_its_cluster(commctl: Commctl, made: str, key_file: Path,
                                                  tmp_path: Path, http: str) -> None:
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="127.0.100.5",
                           COMMISSAIRE_HTTP=http)
    assert code == 0, log
    assert "registered 127.0.100.5" in log and "in cluster c1 (HTTP 201)" in log
    assert [h["address"] for h in hosts_of(commctl)] == ["127.0.100.5"]
    creds = commctl.server.storage.reveal_creds("127.0.100.5")
    assert base64.b64decode(creds["ssh_priv_key"]) == key_file.read_bytes()
    # Run again (a reboot before cloud-init marked it done): idempotent.
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="127.0.100.5",
                           COMMISSAIRE_HTTP=http)
    assert code == 0 and "(HTTP 200)" in log


class _Metadata(BaseHTTPRequestHandler):
    """EC2's metadata service with IMDSv2 tokens required, or OpenStack's (no tokens,
    no public address)."""

    flavour = "ec2"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: str = "") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_PUT(self) -> None:
        if self.flavour == "ec2" and self.path == "/latest/api/token":
            self._send(200, "tok3n")
        else:
            self._send(405)

    def do_GET(self) -> None:
        if self.flavour == "ec2":
            if self.headers.get("X-aws-ec2-metadata-token") != "tok3n":
                return self._send(401)
            answers = {"/latest/meta-data/public-ipv4": "127.0.100.7\n",
                       "/latest/meta-data/local-ipv4": "10.0.0.7"}
        else:
            answers = {"/latest/meta-data/public-ipv4": "",
                       "/latest/meta-data/local-ipv4": "127.0.100.8"}
        if self.path in answers:
            return self._send(200, answers[self.path])
        self._send(404)


@pytest.fixture
def metadata() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("flavour", "expected"), [("ec2", "127.0.100.7"),
                                                   ("openstack", "127.0.100.8")])
@pytest.mark.parametrize("source", ["metadata", "auto"])
@pytest.mark.parametrize("http", ["curl", "python3"])
def test_script_asks_the_metadata_service(commctl: Commctl, made: str, tmp_path: Path,
                                          metadata: ThreadingHTTPServer,
                                          monkeypatch: pytest.MonkeyPatch, flavour: str,
                                          expected: str, source: str, http: str) -> None:
    monkeypatch.setattr(_Metadata, "flavour", flavour)
    url = f"http://127.0.0.1:{metadata.server_address[1]}/latest"
    code, log = run_script(made, tmp_path, COMMISSAIRE_METADATA_URL=url,
                           COMMISSAIRE_ADDRESS_SOURCE=source, COMMISSAIRE_HTTP=http)
    assert code == 0, log
    assert f"address {expected} from the metadata service" in log
    assert [h["address"] for h in hosts_of(commctl)] == [expected]


@pytest.mark.parametrize("source", ["interface", "auto"])
@pytest.mark.parametrize("http", ["curl", "python3"])
def test_script_uses_the_route_to_the_server(commctl: Commctl, made: str, tmp_path: Path,
                                             source: str, http: str) -> None:
    # No metadata service answers here; the route to the server (127.0.0.1) is local.
    need("ip", "iproute2")
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS_SOURCE=source, COMMISSAIRE_HTTP=http,
                           COMMISSAIRE_METADATA_URL=f"http://127.0.0.1:{free_port()}/latest")
    assert code == 0, log
    assert "address 127.0.0.1 from the interface routing to 127.0.0.1" in log
    assert [h["address"] for h in hosts_of(commctl)] == ["127.0.0.1"]


def test_script_can_leave_the_address_to_the_server(commctl: Commctl, made: str,
                                                    tmp_path: Path) -> None:
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS_SOURCE="connection")
    assert code == 0, log
    assert "registered by connection address" in log
    assert [h["address"] for h in hosts_of(commctl)] == ["127.0.0.1"]


def test_script_fails_over_and_retries(commctl: Commctl, made: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="127.0.100.9",
                           COMMISSAIRE_ENDPOINTS=f"{dead} {commctl.server.url}")
    assert code == 0, log
    assert f"attempt 1: no answer from {dead}" in log
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="127.0.100.10",
                           COMMISSAIRE_ENDPOINTS=dead, COMMISSAIRE_MAX_TRIES="3")
    assert code == 1
    assert [line.split(": ", 1)[1].split(":")[0] for line in log.splitlines()] == [
        "attempt 1", "attempt 2", "attempt 3", "giving up after 3 attempts"]


def test_script_stops_when_refused_and_retries_other_errors(commctl: Commctl, made: str,
                                                            tmp_path: Path) -> None:
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="300.1.1.1")
    assert code == 2 and "refused the registration (HTTP 400)" in log and "address" in log
    wrong = "Basic " + base64.b64encode(b"operator:wrong").decode()
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="127.0.100.11",
                           COMMISSAIRE_AUTHORIZATION=wrong)
    assert code == 1 and "answered HTTP 401" in log
    code, log = run_script(made, tmp_path, COMMISSAIRE_ADDRESS="127.0.100.11",
                           COMMISSAIRE_CLUSTER="later")
    assert code == 1 and "answered HTTP 409" in log and "'later' does not exist" in log
    code, log = run_script(made, tmp_path, COMMISSAIRE_SSH_PRIV_KEY="not base64!")
    assert code == 2 and "base64" in log
    assert hosts_of(commctl) == []


def test_script_is_posix_sh(made: str, tmp_path: Path) -> None:
    path = tmp_path / "register"
    path.write_text(made)
    for shell in ("sh", "dash", "bash", "busybox"):
        found = shutil.which(shell)
        if found is None:
            continue
        argv = [found, "sh", "-n", str(path)] if shell == "busybox" else [found, "-n", str(path)]
        if shell == "bash":
            argv.insert(1, "--posix")
        checked = subprocess.run(argv, capture_output=True, text=True)
        assert checked.returncode == 0, (shell, checked.stderr)


def test_script_settings_survive_quoting() -> None:
    registration = userdata.Registration(
        endpoints=["http://h:1/"], ssh_priv_key=b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
        authorization="Bearer it's", address_source="192.0.2.1")
    script = userdata.script(registration)
    assert "setting COMMISSAIRE_AUTHORIZATION 'Bearer it'\"'\"'s'" in script
    assert "setting COMMISSAIRE_ENDPOINTS http://h:1\n" in script
    assert "setting COMMISSAIRE_ADDRESS 192.0.2.1" in script
    assert json.dumps(registration.settings())  # every value is a plain string
