"""Validation of identifiers and request bodies.

Host addresses and record names end up in store keys, Ansible inventories and
SSH command lines, so they are checked here, once, before they go anywhere.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from commissaire.errors import ValidationError

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_address(address: Any, field: str = "address") -> str:
    """Return `address` if it is an IPv4, IPv6 address or DNS name; else raise."""
    if not isinstance(address, str) or not address:
        raise ValidationError("must be an IPv4 address, IPv6 address or DNS name", field=field)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    name = address[:-1] if address.endswith(".") else address
    labels = name.split(".")
    if (
        len(name) > 253
        or not all(_DNS_LABEL.match(label) for label in labels)
        # An all-numeric last label is a malformed IPv4 address, not a name.
        or labels[-1].isdigit()
    ):
        raise ValidationError(
            f"must be an IPv4 address, IPv6 address or DNS name (got {address!r})", field=field
        )
    return name.lower()


def validate_name(name: Any, field: str = "name") -> str:
    """Names of clusters, networks and container managers: safe in keys and paths."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            "must be 1-63 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            field=field,
        )
    return name


def validate_base64(value: Any, field: str) -> bytes:
    """Decode strict base64 (no newlines), naming the field when it is not."""
    if not isinstance(value, str) or not value:
        raise ValidationError("must be a non-empty base64 string", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("is not valid base64 (encode with base64 -w0)", field=field) from None


def check_schema(schema: dict[str, Any], body: Any) -> None:
    """Validate `body` against a JSON schema; the error names the field and why."""
    validator = Draft202012Validator(schema)
    error = best_match(validator.iter_errors(body))
    if error is None:
        return
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        field = ".".join(filter(None, [path, extra[0] if extra else ""]))
        raise ValidationError(
            f"is not a known field; allowed fields are: {', '.join(sorted(allowed))}", field=field
        )
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        raise ValidationError("is required", field=".".join(filter(None, [path, missing])))
    raise ValidationError(_describe(error), field=path or None)


def _describe(error: Any) -> str:
    kind = error.validator
    if kind == "type":
        return f"must be of type {error.validator_value}"
    if kind == "enum":
        return "must be one of: " + ", ".join(map(str, error.validator_value))
    if kind == "minimum":
        return f"must be at least {error.validator_value}"
    if kind == "maximum":
        return f"must be at most {error.validator_value}"
    if kind == "pattern":
        return f"does not match the expected format ({error.validator_value})"
    return str(error.message)
