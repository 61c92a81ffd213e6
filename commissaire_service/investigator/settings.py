"""Where a bootstrap gets what a distribution does not package: the investigator's
admin settings (`kubernetes-minor`, `package-mirrors`, `release-mirror`,
`release-pins`, `repo-keys`).

They are trusted (an administrator wrote them, never an API caller: a caller must
not choose the binary run as root on hosts, nor the key that vouches for it), but
checked at start-up like any input, so a typo stops the service with the setting
named rather than failing every bootstrap later; and the playbooks check them
again before anything is written. Each reaches the bootstrap as one `commissaire_*`
host variable (the contract in docs/distributions-research.md §5.2), only when set:
unset, the playbooks' defaults (playbooks/vars/sources.yml) apply.

A repository key's fingerprint is checked against the key itself, and the key is
handed on re-armored from its decoded bytes (headers dropped, lines rewrapped), so
what reaches hosts is exactly the key whose fingerprint was pinned.
"""
from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import difflib
import hashlib
from typing import Any, TypedDict

from commissaire.config import ConfigError
from commissaire.errors import ValidationError
from commissaire.validation import (
    KUBERNETES_MINOR,
    PGP_FINGERPRINT,
    PGP_PUBLIC_KEY,
    PGP_PUBLIC_KEY_MAX,
    RELEASE_VERSION,
    SHA256_HEX,
    URL,
    URL_MAX,
    check_schema,
    string,
)

#: The package repositories a profile may install from (playbooks/vars/sources.yml).
REPOSITORIES = ("kubernetes", "cri-o", "docker-ce")
#: The release files a profile may fetch.
RELEASES = ("flannel",)  # what the playbooks fetch as release files (sources.yml)
#: Architectures as release files name them (Go's GOARCH), those the profiles
#: bootstrap (playbooks/vars/profiles.yml, commissaire_arch_pattern).
ARCHITECTURES = ("amd64", "arm64")

_URL = string(URL, URL_MAX, description="an http:// or https:// URL: host, optional port "
              "(1-65535) and path of letters, digits and ._~-; no user, query or fragment")
_PINS = {
    "type": "object",
    "properties": {
        "version": string(RELEASE_VERSION, description='a release tag such as "v0.27.4"'),
        "sha256": {
            "type": "object",
            "properties": {arch: string(SHA256_HEX, description="the file's SHA-256: 64 "
                                        "hex digits") for arch in ARCHITECTURES},
            "additionalProperties": False,
            "minProperties": 1,
        },
    },
    "required": ["version", "sha256"],
    "additionalProperties": False,
}
_KEY = {
    "type": "object",
    "properties": {
        "key": string(PGP_PUBLIC_KEY, PGP_PUBLIC_KEY_MAX, description=(
            "an ASCII-armored OpenPGP public key (gpg --armor --export FINGERPRINT), "
            f"at most {PGP_PUBLIC_KEY_MAX // 1024} KiB")),
        "fingerprint": string(PGP_FINGERPRINT, description="the key's fingerprint: 40 hex "
                              "digits without spaces"),
    },
    "required": ["key", "fingerprint"],
    "additionalProperties": False,
}
#: The settings' schema (each setting optional).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kubernetes-minor": string(KUBERNETES_MINOR, description='a Kubernetes minor '
                                   'version as a string, such as "1.35"'),
        "package-mirrors": {"type": "object",
                            "properties": {repo: _URL for repo in REPOSITORIES},
                            "additionalProperties": False},
        "release-mirror": _URL,
        "release-pins": {"type": "object", "properties": {name: _PINS for name in RELEASES},
                         "additionalProperties": False},
        "repo-keys": {"type": "object", "properties": {repo: _KEY for repo in REPOSITORIES},
                      "additionalProperties": False},
    },
}
#: Other settings the investigator reads: a near miss of a bootstrap setting's name
#: ("package-mirror") is a typo, refused rather than silently ignored.
_OTHER_SETTINGS = ("bus-uri", "bus-exchange", "bus-timeout", "threads", "batch-window",
                   "forks", "ssh-kex-algorithms", "ssh-allowed-networks")


class ReleasePin(TypedDict):
    """A release file's pinned version and SHA-256 per architecture."""

    version: str
    sha256: dict[str, str]


@dataclasses.dataclass(frozen=True)
class BootstrapSettings:
    """The checked bootstrap settings; empty ones leave the playbooks' defaults."""

    kubernetes_minor: str = ""
    """`kubernetes-minor`: the pkgs.k8s.io minor ("1.35") kubelet and CRI-O come from."""
    package_mirrors: dict[str, str] = dataclasses.field(default_factory=dict)
    """`package-mirrors`: repository name -> base URL replacing the upstream one (same
    layout; the repository's pinned key still verifies what it serves)."""
    release_mirror: str = ""
    """`release-mirror`: base URL replacing https://github.com/ and https://dl.k8s.io/
    for release files (path under it = the upstream path; the pinned SHA-256 still
    verifies)."""
    release_pins: dict[str, ReleasePin] = dataclasses.field(default_factory=dict)
    """`release-pins`: release name -> {"version", "sha256": {arch: hex}}."""
    repo_keys: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    """`repo-keys`: repository name -> {"key": armored key, "fingerprint": 40 hex}."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BootstrapSettings:
        """Check the settings in a service config; ConfigError names the one at fault."""
        known = (*SCHEMA["properties"], *_OTHER_SETTINGS)
        for name in config:
            if name in known:
                continue
            near = difflib.get_close_matches(str(name), list(SCHEMA["properties"]), n=1,
                                             cutoff=0.8)
            if near:
                raise ConfigError(f"{printable(name)}: not a setting of the investigator; "
                                  f"did you mean {near[0]}?")
        given = {name: config[name] for name in SCHEMA["properties"] if name in config}
        try:
            check_schema(SCHEMA, given)
        except ValidationError as exc:  # names the setting, never echoes its value
            raise ConfigError(printable(exc.description)) from None
        keys = {repo: {"key": _canonical_key(f"repo-keys.{repo}", entry["key"],
                                             entry["fingerprint"].upper()),
                       "fingerprint": entry["fingerprint"].upper()}
                for repo, entry in given.get("repo-keys", {}).items()}
        pins: dict[str, ReleasePin] = {
            name: {"version": pin["version"],
                   "sha256": {arch: digest.lower() for arch, digest in pin["sha256"].items()}}
            for name, pin in given.get("release-pins", {}).items()}
        return cls(
            kubernetes_minor=given.get("kubernetes-minor", ""),
            package_mirrors={repo: _base(url)
                             for repo, url in given.get("package-mirrors", {}).items()},
            release_mirror=_base(given.get("release-mirror", "")),
            release_pins=pins,
            repo_keys=keys,
        )

    def hostvars(self) -> dict[str, object]:
        """The bootstrap's host variables: only the settings that are set (copies:
        each host's variables are its own)."""
        values = {
            "commissaire_kubernetes_minor": self.kubernetes_minor,
            "commissaire_package_mirrors": self.package_mirrors,
            "commissaire_release_mirror": self.release_mirror,
            "commissaire_release_pins": self.release_pins,
            "commissaire_repo_keys": self.repo_keys,
        }
        return {name: copy.deepcopy(value) for name, value in values.items() if value}

    def describe(self) -> str:
        """For the log: what is set, keys named by fingerprint only."""
        parts = []
        if self.kubernetes_minor:
            parts.append(f"kubernetes-minor {self.kubernetes_minor}")
        parts += [f"package-mirrors.{repo} {url}" for repo, url in self.package_mirrors.items()]
        if self.release_mirror:
            parts.append(f"release-mirror {self.release_mirror}")
        parts += [f"release-pins.{name} {pin['version']}" for name, pin in self.release_pins.items()]
        parts += [f"repo-keys.{repo} {entry['fingerprint']}"
                  for repo, entry in self.repo_keys.items()]
        return ", ".join(parts) or "none (the playbooks' defaults)"


def printable(text: str) -> str:
    """One line: a setting's name as the admin typed it, control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _base(url: str) -> str:
    """A base URL ends with "/", as the upstream ones do (https://github.com/)."""
    return url if not url or url.endswith("/") else url + "/"


# -- OpenPGP keys (RFC 4880: armor 6.2, CRC-24 6.1, packets 4.2, fingerprints 12.2) --

_ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"
_TAG_PUBLIC_KEY, _TAG_PUBLIC_SUBKEY = 6, 14
_SECRET_TAGS = (5, 7)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _dearmor(setting: str, text: str) -> bytes:
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    body = lines[lines.index("") + 1:-1]  # the pattern guarantees the blank line
    checksum = body.pop()[1:] if body and body[-1].startswith("=") and len(body[-1]) == 5 \
        else None
    try:
        data = base64.b64decode("".join(body), validate=True)
        expected = base64.b64decode(checksum, validate=True) if checksum else None
    except (binascii.Error, ValueError):
        raise ConfigError(f"{setting}.key: its armored lines are not valid base64") from None
    if expected is not None and int.from_bytes(expected, "big") != _crc24(data):
        raise ConfigError(f"{setting}.key: its armor checksum does not match (the key text "
                          "was altered or truncated)")
    return data


def _packets(setting: str, data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet; ConfigError on anything malformed."""
    packets, at = [], 0
    while at < len(data):
        head = data[at]
        if not head & 0x80:
            raise ConfigError(f"{setting}.key: is not OpenPGP data")
        if head & 0x40:  # new format
            tag = head & 0x3F
            first = data[at + 1] if at + 1 < len(data) else 0
            if first < 192:
                length, at = first, at + 2
            elif first < 224 and at + 2 < len(data):
                length, at = ((first - 192) << 8) + data[at + 2] + 192, at + 3
            elif first == 255:
                length, at = int.from_bytes(data[at + 2:at + 6], "big"), at + 6
            else:
                raise ConfigError(f"{setting}.key: holds a packet this key format never uses")
        else:  # old format
            tag, kind = (head >> 2) & 0x0F, head & 0x03
            if kind == 3:
                raise ConfigError(f"{setting}.key: holds a packet of indeterminate length")
            size = (1, 2, 4)[kind]
            length, at = int.from_bytes(data[at + 1:at + 1 + size], "big"), at + 1 + size
        if at + length > len(data):
            raise ConfigError(f"{setting}.key: is truncated")
        packets.append((tag, data[at:at + length]))
        at += length
    return packets


def _v4_fingerprint(body: bytes) -> str:
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body,
                        usedforsecurity=False).hexdigest().upper()


def _canonical_key(setting: str, text: str, fingerprint: str) -> str:
    """The key re-armored from its bytes, once it holds exactly one public key whose
    primary key or a subkey has `fingerprint`, and no secret key."""
    data = _dearmor(setting, text)
    packets = _packets(setting, data)
    tags = [tag for tag, _ in packets]
    if any(tag in _SECRET_TAGS for tag in tags):
        raise ConfigError(f"{setting}.key: holds a secret key; give the public key only "
                          "(gpg --armor --export)")
    if not tags or tags[0] != _TAG_PUBLIC_KEY or tags.count(_TAG_PUBLIC_KEY) != 1:
        raise ConfigError(f"{setting}.key: must hold exactly one public key")
    found = [_v4_fingerprint(body) for tag, body in packets
             if tag in (_TAG_PUBLIC_KEY, _TAG_PUBLIC_SUBKEY) and body[:1] == b"\x04"]
    if fingerprint not in found:
        raise ConfigError(f"{setting}.fingerprint: {fingerprint} is not the fingerprint of "
                          f"the key given (its keys: {', '.join(found) or 'none of version 4'})")
    encoded = base64.b64encode(data).decode()
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    return "\n".join([_ARMOR_BEGIN, "", *lines, f"={crc}", _ARMOR_END, ""])
