"""commissaire-storage-service: the storage service as its own process.

Config (/etc/commissaire/storage.conf):
  "storage-handlers": CPD-61 list of handlers, e.g.
      [{"name": "commissaire.storage.etcd", "server_url": "http://127.0.0.1:2379", "models": ["*"]}]
  "secrets-key-file": key file that encrypts host credentials at rest (required).
  "secrets-accept-format-1": open secrets sealed by the previous version (default
      true); set false once `python -m commissaire_service.storage.reencrypt` ran.
  "events-max-age", "events-max-count": retention of the activity stream.
"""
from __future__ import annotations

import logging
import threading

from commissaire import errors
from commissaire.bus import BusClient
from commissaire.config import ConfigError
from commissaire.secrets import SecretBox
from commissaire.storage.registry import load_handlers
from commissaire_service.builders import ServiceKind
from commissaire_service.runner import run_service
from commissaire_service.settings import StorageSettings
from commissaire_service.storage.activity import ActivityLog, Retention
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService

logger = logging.getLogger(__name__)

DEFAULT_HANDLERS = [{"name": "commissaire.storage.etcd", "server_url": "http://127.0.0.1:2379",
                     "models": ["*"]}]


def build_storage_service(settings: StorageSettings, bus: BusClient) -> StorageService:
    handlers_config = list(settings.storage_handlers) or DEFAULT_HANDLERS
    key_file = settings.secrets_key_file
    if not key_file:
        raise ConfigError('"secrets-key-file" is required: the key that encrypts host '
                          "credentials at rest (create one with: python -m commissaire.secrets "
                          "generate /etc/commissaire/secrets.key)")
    try:
        box = SecretBox.from_key_file(key_file)
    except errors.SecretsUnavailable as exc:
        raise ConfigError(exc.description) from None
    format_1 = settings.secrets_accept_format_1
    repository = Repository(load_handlers(handlers_config), box, accept_format_1=format_1)
    retention = Retention(max_age=settings.events_max_age, max_count=settings.events_max_count)
    service = StorageService(repository, notify=bus.notify,
                             activity=ActivityLog(repository.handlers, retention))
    threading.Thread(target=_ensure_defaults, args=(service,), daemon=True).start()
    return service


def _ensure_defaults(service: StorageService) -> None:
    """Create the default network once the store answers."""
    stop = threading.Event()
    while True:
        try:
            service.ensure_default_network()
            return
        except errors.StoreUnavailable as exc:
            logger.warning("store not reachable yet (%s); retrying", exc.description)
            stop.wait(2.0)


def main(argv: list[str] | None = None) -> int:
    return run_service(ServiceKind("storage", StorageSettings, build_storage_service), argv)
