"""Commissaire core: models, errors, the bus client, storage handlers, config."""

__version__ = "0.2.0"
