"""The server's settings are parsed once into a frozen dataclass whose fields
each say what they mean."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect

import pytest

from commissaire import config as config_module
from commissaire.config import ConfigError, ServerConfig, load_server_config


def test_the_settings_cannot_change_after_parsing() -> None:
    settings = ServerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.listen_port = 1  # type: ignore[misc]


def test_every_field_has_a_docstring() -> None:
    tree = ast.parse(inspect.getsource(config_module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ServerConfig")
    documented = set()
    for node, after in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            documented.add(node.target.id)  # type: ignore[union-attr]
    assert documented == {f.name for f in dataclasses.fields(ServerConfig)}


def test_numbers_from_flags_are_converted_once() -> None:
    args = argparse.Namespace(config=None, no_config_file=True, listen_port="8123",
                              bus_timeout="2.5")
    settings = load_server_config(args)
    assert (settings.listen_port, settings.bus_timeout) == (8123, 2.5)
    with pytest.raises(ConfigError, match="invalid configuration"):
        load_server_config(argparse.Namespace(config=None, no_config_file=True, workers="two"))
