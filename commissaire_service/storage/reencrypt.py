"""Re-encrypt every sealed record with the newest key, while the services run.

    python -m commissaire_service.storage.reencrypt -c /etc/commissaire/storage.conf
    python -m commissaire_service.storage.reencrypt --data-dir ./var/commissaire

Rotation: put a new key on the first line of the key file (`python -m
commissaire.secrets generate NEW` and prepend its line), wait until the running
storage services use it (they re-read a changed key file within a second), run
this, then remove the old key's line. Each record is rewritten with a
compare-and-swap on its revision, so a record changed meanwhile is read again,
never overwritten; records sealed by an older format (format 1, bound to kind
and key only) come out as format 2, bound to their incarnation too.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from commissaire import errors
from commissaire.config import ConfigError, load_service_config
from commissaire.models import model_class
from commissaire.secrets import SecretBox
from commissaire.storage.base import Item, StoreHandler, Txn
from commissaire.storage.registry import load_handlers
from commissaire_service.storage.main import DEFAULT_HANDLERS
from commissaire_service.storage.sealing import SEALED_KINDS, is_current, seal, unseal

logger = logging.getLogger(__name__)

RETRIES = 20


@dataclasses.dataclass
class Report:
    kid: str = ""
    resealed: int = 0
    current: int = 0
    # (kind, key, why): records that could not be opened; left as they are.
    failed: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)


def reencrypt(handlers: Any, box: SecretBox) -> Report:
    """Re-seal every HostCreds and container manager token not yet sealed with
    `box`'s current key in the current format."""
    report = Report(kid=box.current_kid)
    seen: list[StoreHandler] = []
    for handler in handlers.all():
        if any(handler is h for h in seen):
            continue
        seen.append(handler)
        for kind in SEALED_KINDS:
            prefix = f"{model_class(kind).collection}/"
            for item in handler.list(prefix):
                key = item.key[len(prefix):]
                if "/" not in key:
                    _reseal(handler, box, kind, key, item, report)
    return report


def _reseal(handler: StoreHandler, box: SecretBox, kind: str, key: str, item: Item | None,
            report: Report) -> None:
    for _attempt in range(RETRIES):
        if item is None:
            return  # deleted meanwhile
        if is_current(kind, item.value, box.current_kid):
            report.current += 1
            return
        try:
            stored = seal(box, kind, key, unseal(box, kind, key, item.value))
        except errors.SecretsUnavailable as exc:
            report.failed.append((kind, key, exc.description))
            return
        if handler.commit(Txn(compares=[(item.key, item.revision)], puts=[(item.key, stored)])):
            report.resealed += 1
            return
        item = handler.get(item.key)  # changed meanwhile: look again
    report.failed.append((kind, key, "it changed concurrently too often; run again"))


def _storage_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.data_dir:
        # The all-in-one's layout (commissaire_allinone.main.storage_config).
        data_dir = Path(args.data_dir)
        return {"secrets-key-file": str(data_dir / "secrets.key"),
                "storage-handlers": [{"name": "commissaire.storage.sqlite",
                                      "path": str(data_dir / "commissaire.db"),
                                      "models": ["*"]}]}
    return load_service_config(args.config, "/etc/commissaire/storage.conf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m commissaire_service.storage.reencrypt",
        description="Re-encrypt every sealed record with the first key of the key file.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", help="the storage service's JSON config "
                                              "(default /etc/commissaire/storage.conf)")
    where.add_argument("--data-dir", help="the all-in-one's --data-dir instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = _storage_config(args)
        key_file = config.get("secrets-key-file") or config.get("secrets_key_file")
        if not key_file:
            raise ConfigError('"secrets-key-file" is not set in the storage config')
        box = SecretBox.from_key_file(str(key_file))
        handlers = load_handlers(config.get("storage-handlers")
                                 or config.get("storage_handlers") or DEFAULT_HANDLERS)
    except (ConfigError, ValueError, errors.CommissaireError) as exc:
        reason = exc.description if isinstance(exc, errors.CommissaireError) else str(exc)
        print(f"error: {reason}", file=sys.stderr)
        return 2
    try:
        report = reencrypt(handlers, box)
    except errors.CommissaireError as exc:
        print(f"error: {exc.description}", file=sys.stderr)
        return 1
    finally:
        handlers.close()
    print(f"re-encrypted {report.resealed} record(s) with key id {report.kid}; "
          f"{report.current} already current")
    for kind, key, why in report.failed:
        print(f"not re-encrypted: {kind} {key}: {why}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
