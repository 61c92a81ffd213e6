"""Storage handlers chosen per model from the seed's CPD-61 configuration.

Each entry names a handler module, the models it serves ("*" for all) and the
handler's own options. The first handler listing a model is its default; a
record's `source` picks another configured handler by short name.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from commissaire import errors
from commissaire.storage.base import StoreHandler

logger = logging.getLogger(__name__)

# Keys of a config entry that are the registry's, not the handler's.
_RESERVED = ("name", "models")


class HandlerSet:
    """The configured handlers and which one serves each model by default."""

    def __init__(self, entries: list[tuple[StoreHandler, list[str]]]) -> None:
        self._entries = entries

    def for_model(self, kind: str, source: str = "") -> StoreHandler:
        """The handler `source` names, else `kind`'s default handler."""
        if source:
            for handler, _models in self._entries:
                if handler.short_name == source:
                    return handler
            names = ", ".join(sorted({h.short_name for h, _ in self._entries})) or "none"
            raise errors.ValidationError(
                f"{source!r} names no configured storage handler (configured: {names})",
                field="source")
        for handler, models in self._entries:
            if kind in models or "*" in models:
                return handler
        raise errors.StoreUnavailable(
            f"no storage handler is configured for {kind} records "
            '(add it, or "*", to the "models" of a storage handler)')

    def all(self) -> list[StoreHandler]:
        """Every configured handler, in configuration order."""
        return [handler for handler, _models in self._entries]

    def close(self) -> None:
        for handler in self.all():
            try:
                handler.close()
            except Exception:  # closing one must not keep the others open
                logger.exception("closing storage handler %s failed", handler.short_name)


def _handler_class(name: object) -> type[StoreHandler]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"storage handler \"name\" must be a module name, not {name!r}")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"storage handler {name!r} cannot be imported: {exc}") from exc
    cls = getattr(module, "StoreHandlerClass", None)
    if not (inspect.isclass(cls) and issubclass(cls, StoreHandler)):
        raise ValueError(f"{name!r} is not a storage handler module (no StoreHandlerClass)")
    return cls


def _build(entry: dict[str, Any]) -> tuple[StoreHandler, list[str]]:
    if not isinstance(entry, dict):
        raise ValueError(f"each storage handler must be an object, not {entry!r}")
    name = entry.get("name")
    cls = _handler_class(name)
    models = entry.get("models", ["*"])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f'storage handler {name!r}: "models" must be a list of model names '
                         f'or "*", not {models!r}')
    options = {k: v for k, v in entry.items() if k not in _RESERVED}
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for option in options:
        if option not in accepted and not takes_any:
            raise ValueError(f"storage handler {name!r} has no option {option!r} "
                             f"(it takes: {', '.join(accepted)})")
    try:
        handler = cls(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"storage handler {name!r}: {exc}") from exc
    logger.info("storage handler %s serves %s", name, ", ".join(models))
    return handler, list(models)


def load_handlers(config: list[dict[str, Any]]) -> HandlerSet:
    """Build every configured handler; a ValueError names the first bad entry or option."""
    if not isinstance(config, list) or not config:
        raise ValueError("storage handlers must be a non-empty list of handler objects")
    entries: list[tuple[StoreHandler, list[str]]] = []
    try:
        for entry in config:
            handler, models = _build(entry)
            if any(handler.short_name == h.short_name for h, _ in entries):
                handler.close()
                raise ValueError(f"storage handler {handler.short_name!r} is configured twice: "
                                 "a source could not tell them apart")
            entries.append((handler, models))
    except BaseException:
        for handler, _models in entries:
            handler.close()
        raise
    return HandlerSet(entries)
