"""SecretBox: AES-256-GCM envelopes, key rotation, and errors that leak nothing."""
from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from commissaire.errors import SecretsUnavailable
from commissaire.secrets import ExpiringCache, SecretBox, generate_key_file, main

PLAINTEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-material\n"
CONTEXT = "HostCreds/10.0.0.1"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.key"
    generate_key_file(str(path))
    return path


def _key_material(path: Path) -> list[str]:
    return [line.split(":", 1)[1] for line in path.read_text().splitlines()]


def test_generated_file_is_private_and_well_formed(key_file: Path) -> None:
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (line,) = key_file.read_text().splitlines()
    kid, encoded = line.split(":")
    assert len(kid) == 8 and int(kid, 16) >= 0
    assert len(base64.b64decode(encoded)) == 32
    assert SecretBox.from_key_file(str(key_file)).current_kid == kid


def test_generate_refuses_to_overwrite(key_file: Path) -> None:
    before = key_file.read_text()
    with pytest.raises(SecretsUnavailable, match="already exists"):
        generate_key_file(str(key_file))
    assert key_file.read_text() == before


def test_round_trip_and_envelope_shape(key_file: Path) -> None:
    box = SecretBox.from_key_file(str(key_file))
    envelope = box.encrypt(PLAINTEXT, CONTEXT)
    assert set(envelope) == {"kid", "nonce", "ciphertext"}
    assert envelope["kid"] == box.current_kid
    assert PLAINTEXT.encode() not in base64.b64decode(envelope["ciphertext"])
    assert box.decrypt(envelope, CONTEXT) == PLAINTEXT
    # A fresh nonce each time: the same secret never seals to the same bytes.
    assert box.encrypt(PLAINTEXT, CONTEXT)["ciphertext"] != envelope["ciphertext"]


def test_envelope_is_bound_to_its_record(key_file: Path) -> None:
    box = SecretBox.from_key_file(str(key_file))
    envelope = box.encrypt(PLAINTEXT, CONTEXT)
    with pytest.raises(SecretsUnavailable, match="wrong key or tampered data") as info:
        box.decrypt(envelope, "HostCreds/10.0.0.2")
    assert PLAINTEXT not in str(info.value)


def test_tampered_ciphertext_is_refused(key_file: Path) -> None:
    box = SecretBox.from_key_file(str(key_file))
    envelope = box.encrypt(PLAINTEXT, CONTEXT)
    raw = bytearray(base64.b64decode(envelope["ciphertext"]))
    raw[0] ^= 1
    envelope["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SecretsUnavailable, match="wrong key or tampered data"):
        box.decrypt(envelope, CONTEXT)


def test_rotation_old_key_still_decrypts(tmp_path: Path, key_file: Path) -> None:
    old_box = SecretBox.from_key_file(str(key_file))
    old_envelope = old_box.encrypt(PLAINTEXT, CONTEXT)
    new_file = tmp_path / "new.key"
    generate_key_file(str(new_file))
    # Rotate: the new key first (encrypts), the old one kept for decryption.
    rotated = tmp_path / "rotated.key"
    rotated.write_text(new_file.read_text() + key_file.read_text())
    box = SecretBox.from_key_file(str(rotated))
    assert box.decrypt(old_envelope, CONTEXT) == PLAINTEXT
    new_envelope = box.encrypt(PLAINTEXT, CONTEXT)
    assert new_envelope["kid"] == new_file.read_text().split(":")[0] != old_envelope["kid"]
    # The old file alone cannot open what the new key sealed, and says which key is missing.
    with pytest.raises(SecretsUnavailable) as info:
        old_box.decrypt(new_envelope, CONTEXT)
    message = info.value.description
    assert f"key id '{new_envelope['kid']}' which is not in {key_file}" in message


def test_same_key_id_with_another_key_is_a_wrong_key(tmp_path: Path, key_file: Path) -> None:
    envelope = SecretBox.from_key_file(str(key_file)).encrypt(PLAINTEXT, CONTEXT)
    impostor = tmp_path / "impostor.key"
    kid = envelope["kid"]
    impostor.write_text(f"{kid}:{base64.b64encode(os.urandom(32)).decode()}\n")
    with pytest.raises(SecretsUnavailable, match="wrong key or tampered data"):
        SecretBox.from_key_file(str(impostor)).decrypt(envelope, CONTEXT)


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "none.key"
    with pytest.raises(SecretsUnavailable) as info:
        SecretBox.from_key_file(str(path))
    assert f"secrets key file {path} does not exist" in info.value.description
    assert f"python -m commissaire.secrets generate {path}" in info.value.description


def test_binary_key_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "binary.key"
    path.write_bytes(b"\xff\xfe" + os.urandom(32))
    with pytest.raises(SecretsUnavailable, match="cannot be read: not text"):
        SecretBox.from_key_file(str(path))


def test_directory_as_key_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SecretsUnavailable, match="cannot be read"):
        SecretBox.from_key_file(str(tmp_path))


@pytest.mark.parametrize("bad_line", [
    "no-colon-here",
    "abc:not base64!",
    "abc:" + base64.b64encode(b"short").decode(),
    "bad id:" + base64.b64encode(b"k" * 32).decode(),
])
def test_malformed_line_is_named_without_key_material(tmp_path: Path, key_file: Path,
                                                      bad_line: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(key_file.read_text() + "\n" + bad_line + "\n")
    with pytest.raises(SecretsUnavailable, match="malformed at line 3") as info:
        SecretBox.from_key_file(str(path))
    for material in _key_material(key_file) + [bad_line.split(":")[-1]]:
        assert material not in info.value.description


def test_duplicate_key_id_and_empty_file(tmp_path: Path, key_file: Path) -> None:
    dup = tmp_path / "dup.key"
    dup.write_text(key_file.read_text() * 2)
    with pytest.raises(SecretsUnavailable, match="line 2.*appears twice"):
        SecretBox.from_key_file(str(dup))
    empty = tmp_path / "empty.key"
    empty.write_text("\n# only a comment\n")
    with pytest.raises(SecretsUnavailable, match="holds no key"):
        SecretBox.from_key_file(str(empty))


def test_malformed_envelope(key_file: Path) -> None:
    box = SecretBox.from_key_file(str(key_file))
    envelope = box.encrypt(PLAINTEXT, CONTEXT)
    del envelope["nonce"]
    with pytest.raises(SecretsUnavailable, match="malformed envelope"):
        box.decrypt(envelope, CONTEXT)
    with pytest.raises(SecretsUnavailable, match="not an envelope"):
        box.decrypt("text", CONTEXT)  # type: ignore[arg-type]


def test_repr_shows_no_key(key_file: Path) -> None:
    box = SecretBox.from_key_file(str(key_file))
    for material in _key_material(key_file):
        assert material not in repr(box)


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.key"
    assert main(["generate", str(path)]) == 0
    assert SecretBox.from_key_file(str(path)).current_kid in capsys.readouterr().out
    assert main(["generate", str(path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["bogus"]) == 2


def test_cli_runs_as_module(tmp_path: Path) -> None:
    path = tmp_path / "module.key"
    done = subprocess.run([sys.executable, "-m", "commissaire.secrets", "generate", str(path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_changed_key_file_is_used_without_a_restart(tmp_path: Path, key_file: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import commissaire.secrets as secrets_module

    monkeypatch.setattr(secrets_module, "RELOAD_CHECK_SECONDS", 0.0)
    box = SecretBox.from_key_file(str(key_file))
    old_kid = box.current_kid
    old_envelope = box.encrypt(PLAINTEXT, CONTEXT)
    new_file = tmp_path / "new.key"
    new_kid = generate_key_file(str(new_file))
    key_file.write_text(new_file.read_text() + key_file.read_text())  # rotate: new first
    assert box.current_kid == new_kid
    assert box.encrypt(PLAINTEXT, CONTEXT)["kid"] == new_kid
    assert box.decrypt(old_envelope, CONTEXT) == PLAINTEXT
    # A half-written file keeps the keys in use (and says so in the log, not here).
    key_file.write_text("garbage")
    assert box.current_kid == new_kid and box.decrypt(old_envelope, CONTEXT) == PLAINTEXT
    key_file.write_text(new_file.read_text())  # old key removed
    with pytest.raises(SecretsUnavailable, match=f"key id '{old_kid}' which is not in"):
        box.decrypt(old_envelope, CONTEXT)


def test_an_unknown_key_id_looks_at_the_key_file_at_once(tmp_path: Path, key_file: Path) -> None:
    # Another copy of the service already seals with a newer key: no waiting for
    # the periodic check (RELOAD_CHECK_SECONDS is left as it is here).
    box = SecretBox.from_key_file(str(key_file))
    box.current_kid  # noqa: B018  (checked just now)
    new_file = tmp_path / "new.key"
    generate_key_file(str(new_file))
    key_file.write_text(new_file.read_text() + key_file.read_text())
    newer = SecretBox.from_key_file(str(key_file)).encrypt(PLAINTEXT, CONTEXT)
    assert box.decrypt(newer, CONTEXT) == PLAINTEXT


def test_expiring_cache_forgets_after_its_ttl() -> None:
    now = [0.0]
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=60, maxsize=2, clock=lambda: now[0])
    made: list[str] = []

    def make(value: str) -> Callable[[], str]:
        return lambda: made.append(value) or value

    assert cache.get("a", make("key-a")) == "key-a"
    assert cache.get("a", make("again")) == "key-a" and made == ["key-a"]
    now[0] = 61.0
    assert len(cache) == 0  # expired: nothing decrypted stays around
    assert cache.get("a", make("key-a2")) == "key-a2"
    cache.get("b", make("b"))
    cache.get("c", make("c"))
    assert len(cache) == 2  # bounded in size too


def test_ssh_private_keys_are_not_kept_indefinitely() -> None:
    from commissaire import ssh

    cache = ssh._PRIVATE_KEYS
    assert isinstance(cache, ExpiringCache) and 0 < cache.ttl <= 300
    assert not hasattr(ssh._private_key, "cache_info")  # no lru_cache


def test_the_watcher_keeps_decrypted_keys_briefly() -> None:
    from commissaire_service.watcher.service import WatcherService

    watcher = WatcherService(bus=None, start=False)  # type: ignore[arg-type]
    assert isinstance(watcher._creds, ExpiringCache) and 0 < watcher._creds.ttl <= 300
