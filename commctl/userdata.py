"""`commctl user-data`: a cloud-init file that registers new hosts at first boot
(seed chapter 13.6).

The server must be able to ssh to the new host, so, as the original did, the
operator's key pair is used: the public key (-a, default the private key's
.pub) is authorized for the remote user through cloud-config, and the private
key (-s) is sent, base64, in the registration body for the server to use.
Nothing secret is made on the host. The file therefore holds a private key and
a Commissaire credential: it is written 0600, and anyone who can read the
instance's user-data (its metadata service) can read them.

The host registers itself with PUT /api/v0/host from a small POSIX script
(register_script.py) written by write_files and started from runcmd in the
background, so a server that is down at boot only delays registration (the
script retries with backoff) and never blocks the boot.
"""
from __future__ import annotations

import base64
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from commctl.exitstatus import CommctlError, ExitStatus
from commctl.register_script import SCRIPT

SCRIPT_PATH = "/var/lib/commissaire/register"
CA_PATH = "/var/lib/commissaire/ca.pem"
LOG_PATH = "/var/log/commissaire-register.log"
METADATA_URL = "http://169.254.169.254/latest"
ADDRESS_SOURCES = ("auto", "metadata", "interface", "connection")
# Matched in full (fullmatch): a "$" would let a trailing newline into the cloud-config.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ADDRESS = re.compile(r"[0-9A-Za-z.:-]+")


def _usage(message: str) -> CommctlError:
    return CommctlError(message, ExitStatus.USAGE)


@dataclass
class Registration:
    """What the generated host needs to register itself."""

    endpoints: list[str]
    ssh_priv_key: bytes
    cluster: str = ""
    remote_user: str = "root"
    ssh_port: int | None = None
    authorization: str = ""  # the Authorization header value, '' for none
    address_source: str = "auto"  # one of ADDRESS_SOURCES or a literal address
    authorized_keys: list[str] = field(default_factory=list)
    ca_cert: str = ""  # PEM of the CA the endpoint's certificate is checked against

    def check(self) -> None:
        if not self.endpoints:
            raise _usage("user-data needs an endpoint (-e URL)")
        for url in self.endpoints:
            if not re.fullmatch(r"https?://[^\s\"'\\]+", url):
                raise _usage(f"endpoint {url!r} must be an http:// or https:// URL")
        if self.cluster and not _PLAIN.fullmatch(self.cluster):
            raise _usage(f"cluster {self.cluster!r} is not a valid name")
        if not _PLAIN.fullmatch(self.remote_user):
            raise _usage(f"remote user {self.remote_user!r} is not a plain user name")
        if self.address_source not in ADDRESS_SOURCES and not _ADDRESS.fullmatch(self.address_source):
            raise _usage("--address-source must be auto, metadata, interface, connection "
                         "or an address")
        if not self.ssh_priv_key.strip():
            raise _usage("the private key file is empty")
        if b"PRIVATE KEY" not in self.ssh_priv_key:
            raise _usage("-s/--ssh-key-path must name a private key (the server logs in with "
                         "it); the public key goes to -a/--authorized-keys-path")
        if not self.authorization:
            # The server lets an anonymous host register only the address it connects
            # from, into no cluster (else anyone could join a cluster, or aim the
            # server's SSH anywhere): such user-data would fail at every boot.
            if self.cluster:
                raise _usage("-c/--cluster needs credentials (-u or --auth-from-config): the "
                             "server refuses an anonymous registration that names its cluster")
            if self.address_source != "connection":
                raise _usage("without credentials (-u or --auth-from-config) the server takes "
                             "the host's address from its connection: --address-source must "
                             "be connection")

    def settings(self) -> dict[str, str]:
        """The script's settings (each can still be overridden from the environment)."""
        literal = self.address_source not in ADDRESS_SOURCES
        return {
            "COMMISSAIRE_ENDPOINTS": " ".join(u.rstrip("/") for u in self.endpoints),
            "COMMISSAIRE_CLUSTER": self.cluster,
            "COMMISSAIRE_REMOTE_USER": self.remote_user,
            "COMMISSAIRE_SSH_PORT": str(self.ssh_port or ""),
            "COMMISSAIRE_SSH_PRIV_KEY": base64.b64encode(self.ssh_priv_key).decode(),
            "COMMISSAIRE_AUTHORIZATION": self.authorization,
            "COMMISSAIRE_ADDRESS_SOURCE": "auto" if literal else self.address_source,
            "COMMISSAIRE_ADDRESS": self.address_source if literal else "",
            "COMMISSAIRE_METADATA_URL": METADATA_URL,
            "COMMISSAIRE_CA_FILE": CA_PATH if self.ca_cert else "",
            "COMMISSAIRE_HTTP": "auto",
            "COMMISSAIRE_LOG": LOG_PATH,
            "COMMISSAIRE_MAX_TRIES": "0",
            "COMMISSAIRE_RETRY_DELAY": "5",
            "COMMISSAIRE_RETRY_MAX_DELAY": "300",
        }


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def script(registration: Registration) -> str:
    """The register script with this registration's settings filled in."""
    registration.check()
    lines = [f"setting {name} {shlex.quote(value)}"
             for name, value in registration.settings().items()]
    return SCRIPT.replace("# @SETTINGS@", "\n".join(lines), 1)


def public_keys(text: str, where: str) -> list[str]:
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise _usage(f"{where} holds no public key")
    if any("PRIVATE KEY" in key for key in keys):
        raise _usage(f"{where} is a private key; -a/--authorized-keys-path takes public keys")
    return keys


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the script) as YAML block literals, readable in the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def cloud_config(registration: Registration, base: dict[str, Any] | None = None) -> str:
    """The #cloud-config text: `base` (from -C) with our keys, files and command added."""
    config: dict[str, Any] = dict(base or {})
    keys = registration.authorized_keys
    if keys and registration.remote_user == "root":
        # cloud-init gives root the keys too, but behind a "login as the default user"
        # command unless disable_root is false.
        if config.get("disable_root") is True:
            raise _usage("the --cloud-init file sets disable_root: true, so the server could "
                         "not log in as root; remove it or use -r/--remote-user")
        config["disable_root"] = False
        config["ssh_authorized_keys"] = [*(config.get("ssh_authorized_keys") or []), *keys]
    elif keys:
        users = list(config.get("users") or ["default"])
        users.append({"name": registration.remote_user, "ssh_authorized_keys": keys,
                      "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/sh"})
        config["users"] = users
    files = [{"path": SCRIPT_PATH, "owner": "root:root", "permissions": "0700",
              "content": script(registration)}]
    if registration.ca_cert:
        files.append({"path": CA_PATH, "owner": "root:root", "permissions": "0644",
                      "content": registration.ca_cert})
    config["write_files"] = [*(config.get("write_files") or []), *files]
    # In the background: cloud-init's final stage (and so the boot) does not wait for
    # a server that is down; the script's log is LOG_PATH.
    config["runcmd"] = [*(config.get("runcmd") or []),
                        ["sh", "-c", f"nohup sh {SCRIPT_PATH} >/dev/null 2>&1 &"]]
    body = yaml.dump(config, Dumper=_Dumper, default_flow_style=False, sort_keys=False, width=1000)
    return ("#cloud-config\n"
            "# Made by `commctl user-data`: registers this host with Commissaire at first boot\n"
            f"# (log: {LOG_PATH}). It holds a Commissaire credential and an SSH private key:\n"
            "# keep it private.\n" + body)


def read_base(path: str) -> dict[str, Any]:
    """The -C/--cloud-init file to extend: #cloud-config YAML holding a mapping."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise _usage(f"cannot read {path}: {exc.strerror}") from None
    if not text.startswith("#cloud-config"):
        raise _usage(f"{path} must be a #cloud-config file (its first line)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _usage(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _usage(f"{path} must hold a YAML mapping")
    return data


def write_private(path: str, text: str) -> None:
    """Write the file readable by its owner only: it holds secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
