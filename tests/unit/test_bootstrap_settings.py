"""The investigator's bootstrap settings (admin config): checked at start-up, a bad
one stops the service naming it, and the good ones reach the bootstrap as host
variables, written unsafe into the inventory Ansible reads.

Keys are real OpenPGP keys made by gpg for the test (a throwaway home), and gpg
itself confirms that the key handed to hosts is the one whose fingerprint was pinned.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import is_trusted_as_template

from commissaire.ansible import runner
from commissaire.config import ConfigError
from commissaire_service import builders
from commissaire_service.investigator.service import InvestigatorService
from commissaire_service.investigator.settings import BootstrapSettings
from tests.unit.fakes import DirectBus
from tests.unit.test_investigator import add_host, world  # noqa: F401  (fixture)

HOSTILE = ["{{ lookup('pipe','id') }}", "; id", "$(id)", "`id`", "1.35\n", "x\ny"]
FLANNEL_AMD64 = "fc1233aac3ad2707d14c9ae42016b5402753f755f0d07cc5c41dc4190e95d299"
FLANNEL_ARM64 = "aa4f59bff09603ad10634c5a930afa57631dd99d8da0b7baeaadc655f00831b7"


# -- throwaway OpenPGP keys ------------------------------------------------------------

@dataclass
class Key:
    armored: str
    fingerprint: str
    subkey: str
    secret_armored: str


def _gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--batch", "--homedir", str(home), "--pinentry-mode",
                           "loopback", "--passphrase", "", *args], check=True,
                          capture_output=True, text=True).stdout


def _fingerprints(home: Path, armored: str) -> list[str]:
    """What gpg itself says the keys in `armored` are (primary first)."""
    out = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--with-colons",
                          "--show-keys"], input=armored, check=True, capture_output=True,
                         text=True).stdout
    return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]


@pytest.fixture(scope="module")
def gnupg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    try:
        yield home
    finally:  # the agent gpg started for this home only
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       check=False, capture_output=True)


def _make_key(home: Path, name: str) -> Key:
    _gpg(home, "--quick-gen-key", f"{name} <{name}@example.invalid>", "ed25519", "sign", "never")
    primary = _fingerprints(home, _gpg(home, "--armor", "--export", f"{name}@example.invalid"))[0]
    _gpg(home, "--quick-add-key", primary, "cv25519", "encr", "never")
    armored = _gpg(home, "--armor", "--export", primary)
    return Key(armored, primary, _fingerprints(home, armored)[1],
               _gpg(home, "--armor", "--export-secret-keys", primary))


@pytest.fixture(scope="module")
def key(gnupg: Path) -> Key:
    return _make_key(gnupg, "mirror")


@pytest.fixture(scope="module")
def other_key(gnupg: Path) -> Key:
    return _make_key(gnupg, "other")


def full_config(key: Key) -> dict[str, Any]:
    return {
        "kubernetes-minor": "1.35",
        "package-mirrors": {"kubernetes": "http://127.0.0.1:8081/k8s",
                            "cri-o": "https://mirror.example.com/crio/",
                            "docker-ce": "http://[::1]:8082/docker"},
        "release-mirror": "http://127.0.0.1:8083/releases",
        "release-pins": {"flannel": {"version": "v0.27.4", "sha256": {
            "amd64": FLANNEL_AMD64.upper(), "arm64": FLANNEL_ARM64}}},
        "repo-keys": {"kubernetes": {"key": key.armored, "fingerprint": key.fingerprint.lower()}},
    }


def _rearmored(text: str, data: bytes) -> str:
    """`data` armored with the public-key header lines of `text` (no checksum)."""
    encoded = base64.b64encode(data).decode()
    return "\n".join(["-----BEGIN PGP PUBLIC KEY BLOCK-----", "",
                      *[encoded[i:i + 64] for i in range(0, len(encoded), 64)],
                      "-----END PGP PUBLIC KEY BLOCK-----", ""])


def _dearmored(text: str) -> bytes:
    lines = text.strip().splitlines()
    body = lines[lines.index("") + 1:-1]
    return base64.b64decode("".join(line for line in body if not line.startswith("=")))


# -- what the settings become ------------------------------------------------------------

def test_the_settings_become_these_host_variables(key: Key, gnupg: Path) -> None:
    hostvars = BootstrapSettings.from_config(full_config(key)).hostvars()
    handed_key = hostvars["commissaire_repo_keys"]["kubernetes"].pop("key")
    assert hostvars == {
        "commissaire_kubernetes_minor": "1.35",
        # Base URLs end with "/", as the upstream ones do (https://github.com/).
        "commissaire_package_mirrors": {"kubernetes": "http://127.0.0.1:8081/k8s/",
                                        "cri-o": "https://mirror.example.com/crio/",
                                        "docker-ce": "http://[::1]:8082/docker/"},
        "commissaire_release_mirror": "http://127.0.0.1:8083/releases/",
        "commissaire_release_pins": {"flannel": {"version": "v0.27.4", "sha256": {
            "amd64": FLANNEL_AMD64, "arm64": FLANNEL_ARM64}}},
        "commissaire_repo_keys": {"kubernetes": {"fingerprint": key.fingerprint.upper()}},
    }
    # The key handed on is the very key pinned, as gpg reads it: armor without
    # headers, 64-column lines, a checksum.
    assert _fingerprints(gnupg, handed_key) == [key.fingerprint, key.subkey]
    assert _dearmored(handed_key) == _dearmored(key.armored)
    lines = handed_key.splitlines()
    assert lines[0] == "-----BEGIN PGP PUBLIC KEY BLOCK-----" and lines[1] == ""
    assert lines[-1] == "-----END PGP PUBLIC KEY BLOCK-----" and lines[-2].startswith("=")
    assert all(len(line) <= 64 for line in lines[2:-2]) and handed_key.endswith("\n")


def test_unset_settings_pass_nothing_so_the_playbooks_defaults_apply() -> None:
    assert BootstrapSettings.from_config({}).hostvars() == {}
    assert BootstrapSettings.from_config({"bus-uri": "redis://x/", "forks": 5}).hostvars() == {}
    only = BootstrapSettings.from_config({"release-mirror": "https://m.example.org/"})
    assert only.hostvars() == {"commissaire_release_mirror": "https://m.example.org/"}


def test_a_key_with_armor_headers_and_a_subkey_fingerprint_is_taken(key: Key,
                                                                    gnupg: Path) -> None:
    lines = key.armored.splitlines()
    with_headers = "\r\n".join([lines[0], "Comment: mirror key (test) <ops@example.com>",
                                "Version: GnuPG v2", *lines[1:]]) + "\r\n"
    settings = BootstrapSettings.from_config({"repo-keys": {"cri-o": {
        "key": with_headers, "fingerprint": key.subkey}}})
    handed = settings.repo_keys["cri-o"]["key"]
    assert "Comment" not in handed and "\r" not in handed
    assert _fingerprints(gnupg, handed) == [key.fingerprint, key.subkey]
    assert settings.repo_keys["cri-o"]["fingerprint"] == key.subkey


def test_the_bootstrap_gets_them_with_the_clusters_runtime(world, key: Key  # noqa: F811
                                                           ) -> None:  # type: ignore[no-untyped-def]
    bus, storage, recorder = world
    storage.create("ContainerManagerConfig", {"name": "k8s", "type": "kubernetes",
                                              "options": {"server_url": "https://127.0.0.1:6443"}})
    storage.create("Cluster", {"name": "prod", "container_manager": "k8s",
                               "container_runtime": "containerd"})
    bus.services["container"] = _Registrar()
    settings = BootstrapSettings.from_config(full_config(key))
    svc = InvestigatorService(bus, bootstrap=settings)
    try:
        add_host(storage, "127.0.2.1", cluster="prod")
        add_host(storage, "127.0.2.2")
        svc.run_batch(["127.0.2.1", "127.0.2.2"])
    finally:
        svc.stop()
    (playbook, targets), = recorder.runs
    assert playbook == "investigate.yml"
    in_cluster, alone = sorted(targets, key=lambda t: t.address)
    assert in_cluster.hostvars["commissaire_container_runtime"] == "containerd"
    assert in_cluster.hostvars["commissaire_container_manager_type"] == "kubernetes"
    # A host in no cluster is bootstrapped from the same sources, the profile's runtime.
    assert alone.hostvars["commissaire_container_runtime"] == ""
    for target in (in_cluster, alone):
        assert {k: v for k, v in target.hostvars.items()
                if k in settings.hostvars()} == settings.hostvars()
    assert storage.get_host("127.0.2.1")["status"] == "active"
    assert storage.get_host("127.0.2.2")["status"] == "disassociated"


class _Registrar:
    """The containermgr service's node registration, accepting every node."""

    name = "container"

    def dispatch(self, method: str, params: dict[str, Any], context: dict[str, Any]) -> Any:
        assert method == "container.register_node"
        return {}


def test_they_reach_the_inventory_as_unsafe_text(key: Key, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Through the real runner: each value comes out as given, none a template."""
    seen: dict[str, Any] = {}

    def capture(**kwargs: Any) -> Any:
        seen["inventory"] = DataLoader().load_from_file(kwargs["inventory"], cache="none",
                                                        trusted_as_template=True)
        return type("R", (), {"status": "successful"})()

    monkeypatch.setattr(runner.ansible_runner, "run", capture)
    # Admin-trusted and checked, but written as untrusted data all the same: here
    # a value that had slipped past the checks.
    settings = BootstrapSettings(release_mirror=HOSTILE[0],
                                 release_pins={"flannel": {"version": HOSTILE[0],
                                                           "sha256": {"amd64": HOSTILE[0]}}})
    hostvars = {**BootstrapSettings.from_config(full_config(key)).hostvars(),
                **settings.hostvars()}
    runner.run_playbook("investigate.yml", [runner.Target(
        "127.0.0.1", "key", host_key="ssh-ed25519 AAAA", hostvars=hostvars)])
    host = seen["inventory"]["all"]["hosts"]["127.0.0.1"]
    for name, value in hostvars.items():
        assert host[name] == value
        assert not [s for s in _strings(host[name]) if is_trusted_as_template(s)]


def _strings(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    return [value] if isinstance(value, str) else []


# -- refused at start-up, naming the setting --------------------------------------------

def _refusal(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        BootstrapSettings.from_config(config)
    return str(caught.value)


def _hostile_configs(key: Key) -> list[tuple[str, dict[str, Any]]]:
    """(the setting named, a config with one hostile value in it), for each place."""
    pin = {"version": "v0.27.4", "sha256": {"amd64": FLANNEL_AMD64}}
    cases: list[tuple[str, dict[str, Any]]] = []
    for bad in HOSTILE:
        cases += [
            ("kubernetes-minor", {"kubernetes-minor": bad}),
            ("package-mirrors.kubernetes", {"package-mirrors": {"kubernetes": bad}}),
            ("package-mirrors.kubernetes", {"package-mirrors": {
                "kubernetes": "http://127.0.0.1/" + bad}}),
            (f"package-mirrors.{bad}", {"package-mirrors": {bad: "http://127.0.0.1/"}}),
            ("release-mirror", {"release-mirror": bad}),
            ("release-mirror", {"release-mirror": "http://m.example.com" + bad}),
            (f"release-pins.{bad}", {"release-pins": {bad: pin}}),
            ("release-pins.flannel.version", {"release-pins": {"flannel": {**pin,
                                                                            "version": bad}}}),
            ("release-pins.flannel.sha256.amd64", {"release-pins": {"flannel": {
                **pin, "sha256": {"amd64": bad}}}}),
            (f"release-pins.flannel.sha256.{bad}", {"release-pins": {"flannel": {
                **pin, "sha256": {bad: FLANNEL_AMD64}}}}),
            (f"repo-keys.{bad}", {"repo-keys": {bad: {"key": key.armored,
                                                      "fingerprint": key.fingerprint}}}),
            ("repo-keys.kubernetes.key", {"repo-keys": {"kubernetes": {
                "key": bad, "fingerprint": key.fingerprint}}}),
            ("repo-keys.kubernetes.key", {"repo-keys": {"kubernetes": {  # in a header
                "key": key.armored.replace("\n\n", f"\nComment: {bad}\n\n", 1),
                "fingerprint": key.fingerprint}}}),
            ("repo-keys.kubernetes.key", {"repo-keys": {"kubernetes": {  # in the body
                "key": key.armored.replace("\n\n", f"\n\n{bad}\n", 1),
                "fingerprint": key.fingerprint}}}),
            ("repo-keys.kubernetes.fingerprint", {"repo-keys": {"kubernetes": {
                "key": key.armored, "fingerprint": bad}}}),
        ]
    return cases


def _printable(text: str) -> str:
    return text.replace("\n", "\\n")


def test_hostile_values_stop_the_service_naming_the_setting(key: Key) -> None:
    cases = _hostile_configs(key)
    assert len(cases) == 15 * len(HOSTILE)
    for setting, config in cases:
        message = _refusal(config)
        assert message.startswith(_printable(setting) + ": "), (setting, message)
        assert "\n" not in message
        assert "BEGIN PGP" not in message and key.armored.splitlines()[2] not in message
        # The builder refuses the same, before any service exists.
        with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
            builders.build_investigator(config, DirectBus())  # type: ignore[arg-type]


@pytest.mark.parametrize("config, message", [
    ({"kubernetes-minor": 1.35}, 'kubernetes-minor: must be of type string'),
    ({"kubernetes-minor": "1.3"}, 'kubernetes-minor: must be a Kubernetes minor version as '
                                  'a string, such as "1.35"'),
    ({"kubernetes-minor": "v1.35"}, "kubernetes-minor: must be a Kubernetes minor"),
    ({"kubernetes-minor": "1.35.2"}, "kubernetes-minor: must be a Kubernetes minor"),
    ({"package-mirrors": {"kubernets": "http://m/"}},
     "package-mirrors.kubernets: is not a known field; allowed fields are: cri-o, docker-ce, "
     "kubernetes"),
    ({"package-mirrors": ["http://m/"]}, "package-mirrors: must be of type object"),
    ({"package-mirrors": {"cri-o": "ftp://m.example.com/"}},
     "package-mirrors.cri-o: must be an http:// or https:// URL"),
    ({"package-mirrors": {"cri-o": "http://user:pw@m.example.com/"}},
     "package-mirrors.cri-o: must be an http:// or https:// URL"),
    ({"release-mirror": "https://m.example.com/?x=1"}, "release-mirror: must be an http://"),
    ({"release-pins": {"flanel": {"version": "v1.0.0", "sha256": {"amd64": FLANNEL_AMD64}}}},
     "release-pins.flanel: is not a known field; allowed fields are: flannel"),
    # The playbooks install no kube-proxy (a DaemonSet's job): a pin for it would
    # fail every bootstrap, so it is refused when the service starts.
    ({"release-pins": {"kube-proxy": {"version": "v1.35.0", "sha256": {"amd64": FLANNEL_AMD64}}}},
     "release-pins.kube-proxy: is not a known field; allowed fields are: flannel"),
    ({"release-pins": {"flannel": {"version": "0.27.4", "sha256": {"amd64": FLANNEL_AMD64}}}},
     'release-pins.flannel.version: must be a release tag such as "v0.27.4"'),
    ({"release-pins": {"flannel": {"sha256": {"amd64": FLANNEL_AMD64}}}},
     "release-pins.flannel.version: is required"),
    ({"release-pins": {"flannel": {"version": "v0.27.4"}}},
     "release-pins.flannel.sha256: is required"),
    ({"release-pins": {"flannel": {"version": "v0.27.4", "sha256": {}}}},
     "release-pins.flannel.sha256: must have at least 1 field(s)"),
    ({"release-pins": {"flannel": {"version": "v0.27.4", "sha256": {
        "x86_64": FLANNEL_AMD64}}}},
     "release-pins.flannel.sha256.x86_64: is not a known field; allowed fields are: amd64, "
     "arm64"),
    ({"release-pins": {"flannel": {"version": "v0.27.4", "sha256": {
        "s390x": FLANNEL_AMD64}}}},
     "release-pins.flannel.sha256.s390x: is not a known field; allowed fields are: amd64, "
     "arm64"),
    ({"release-pins": {"flannel": {"version": "v0.27.4", "sha256": {
        "amd64": FLANNEL_AMD64[:-1]}}}},
     "release-pins.flannel.sha256.amd64: must be the file's SHA-256: 64 hex digits"),
    ({"release-pins": {"flannel": {"version": "v0.27.4", "checksum": "x",
                                   "sha256": {"amd64": FLANNEL_AMD64}}}},
     "release-pins.flannel.checksum: is not a known field"),
    ({"repo-keys": {"kubernetes": {"fingerprint": "DE15B14486CD377B9E876E1A234654DA9A296436"}}},
     "repo-keys.kubernetes.key: is required"),
    ({"package-mirror": {"kubernetes": "http://m/"}},
     "package-mirror: not a setting of the investigator; did you mean package-mirrors?"),
    ({"repo-key": {}}, "repo-key: not a setting of the investigator; did you mean repo-keys?"),
])
def test_mistakes_are_named_with_what_is_expected(config: dict[str, Any], message: str) -> None:
    assert _refusal(config).startswith(message)


def test_a_key_that_is_not_the_pinned_one_is_refused(key: Key, other_key: Key) -> None:
    message = _refusal({"repo-keys": {"docker-ce": {"key": other_key.armored,
                                                    "fingerprint": key.fingerprint}}})
    assert message == (f"repo-keys.docker-ce.fingerprint: {key.fingerprint} is not the "
                       f"fingerprint of the key given (its keys: {other_key.fingerprint}, "
                       f"{other_key.subkey})")
    # Spaces as gpg prints them: said plainly.
    spaced = " ".join(key.fingerprint[i:i + 4] for i in range(0, 40, 4))
    assert _refusal({"repo-keys": {"docker-ce": {"key": key.armored, "fingerprint": spaced}}}) \
        == "repo-keys.docker-ce.fingerprint: must be the key's fingerprint: 40 hex digits " \
           "without spaces"


def test_altered_secret_or_several_keys_are_refused(key: Key, other_key: Key,
                                                    gnupg: Path) -> None:
    def refused(text: str) -> str:
        return _refusal({"repo-keys": {"kubernetes": {"key": text,
                                                      "fingerprint": key.fingerprint}}})

    lines = key.armored.splitlines()
    flipped = lines[2][:10] + ("A" if lines[2][10] != "A" else "B") + lines[2][11:]
    assert refused("\n".join([*lines[:2], flipped, *lines[3:]]) + "\n") == (
        "repo-keys.kubernetes.key: its armor checksum does not match (the key text was "
        "altered or truncated)")
    secret = _dearmored(key.secret_armored)
    assert key.secret_armored.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert refused(key.secret_armored).startswith(
        "repo-keys.kubernetes.key: must be an ASCII-armored OpenPGP public key")
    # Secret packets under a public header: refused by what they are.
    assert refused(_rearmored(key.armored, secret)) == (
        "repo-keys.kubernetes.key: holds a secret key; give the public key only "
        "(gpg --armor --export)")
    both = _dearmored(key.armored) + _dearmored(other_key.armored)
    assert refused(_rearmored(key.armored, both)) == (
        "repo-keys.kubernetes.key: must hold exactly one public key")
    assert refused(_rearmored(key.armored, _dearmored(key.armored)[:-7])) == (
        "repo-keys.kubernetes.key: is truncated")
    assert refused(_rearmored(key.armored, b"not a key at all")) == (
        "repo-keys.kubernetes.key: is not OpenPGP data")
    huge = key.armored.replace("\n\n", "\n\n" + ("A" * 64 + "\n") * 1100, 1)
    assert refused(huge).startswith("repo-keys.kubernetes.key: must be an ASCII-armored "
                                    "OpenPGP public key (gpg --armor --export FINGERPRINT), "
                                    "at most 64 KiB")


def test_the_log_names_keys_by_fingerprint_only(key: Key,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="commissaire_service.builders"):
        investigator: Any = builders.build_investigator(full_config(key), DirectBus())  # type: ignore[arg-type]
    investigator.stop()
    logged = caplog.text
    assert f"repo-keys.kubernetes {key.fingerprint}" in logged
    assert "release-pins.flannel v0.27.4" in logged
    assert "package-mirrors.kubernetes http://127.0.0.1:8081/k8s/" in logged
    assert "PGP" not in logged and key.armored.splitlines()[2] not in logged
    assert investigator.bootstrap.hostvars()["commissaire_kubernetes_minor"] == "1.35"


def test_the_service_does_not_start_with_a_bad_setting(tmp_path: Path, key: Key) -> None:
    """The real entry point: exit status 2, the setting named, no bus contacted."""
    config = tmp_path / "investigator.conf"
    config.write_text(json.dumps({"bus-uri": "redis://127.0.0.1:9/0",
                                  "release-mirror": "http://m.example.com/$(id)"}))
    service = Path(sys.executable).parent / "commissaire-investigator-service"
    done = subprocess.run([str(service), "-c", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "commissaire-investigator-service: release-mirror: must be an http:// or https:// "
        "URL: host, optional port (1-65535) and path of letters, digits and ._~-; no user, "
        "query or fragment")
