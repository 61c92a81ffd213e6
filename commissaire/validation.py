"""Validation of identifiers and request bodies: allow-lists, matched in full.

Host addresses, record names, user names, versions, URLs and keys end up in
store keys, Ansible inventories, files on hosts and SSH command lines, so each
is checked here, once, against a pattern of what is allowed (never a list of
what is not) before it goes anywhere.

Every pattern is written once, as a regular expression that means the same in
Python and in ECMA-262 (the dialect of JSON Schema and of the OpenAPI document):
ASCII classes only (no \\d, \\w or \\s, which are Unicode-wide in Python), no
lookarounds. Python code matches a pattern with `fullmatch`; a schema gets it
as `^(?:...)$`, and `check_schema` reads such an anchored pattern as a full match
too, because Python's `$` also matches before a trailing newline (`prod\\n`) while
ECMA's does not.
"""
from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import math
import re
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match

from commissaire.errors import BadJSON, ValidationError

# -- patterns ---------------------------------------------------------------

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = r"[0-9A-Fa-f]{1,4}"
# RFC 4291 text forms, "::" in every position, IPv4 tails; never a zone id ("%eth0").
IPV6 = "(?:" + "|".join([
    rf"(?:{_H}:){{7}}{_H}",
    rf"(?:{_H}:){{1,7}}:",
    rf"(?:{_H}:){{1,6}}:{_H}",
    rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
    rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
    rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
    rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
    rf"{_H}:(?::{_H}){{1,6}}",
    rf":(?:(?::{_H}){{1,7}}|:)",
    rf"(?:{_H}:){{6}}{IPV4}",
    rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{IPV4}",
    rf"(?:{_H}:){{1,4}}:{IPV4}",
]) + ")"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The last label starts with a letter, as every top-level domain does: that is what
# tells a name from a malformed IPv4 address ("10.0.0.300").
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = rf"(?:{_LABEL}\.)*{_TOP_LABEL}\.?"
ADDRESS = f"(?:{IPV4}|{IPV6}|{DNS_NAME})"
ADDRESS_MAX = 253
PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_URL_HOST = rf"(?:{IPV4}|{DNS_NAME}|\[{IPV6}\])"
# http(s) only; no user info, query, fragment, percent-escapes or white space.
URL = rf"https?://{_URL_HOST}(?::{PORT})?(?:/[A-Za-z0-9._~-]*)*"
URL_MAX = 2048
HOST_PORT = rf"{_URL_HOST}:{PORT}"
# A POSIX user name as useradd takes it (no "$" machine accounts, no leading "-").
USER_NAME = r"[a-z_][a-z0-9_.-]{0,31}"
# A deploy version: an OSTree ref/version or a package version; never shell text.
VERSION = r"[A-Za-z0-9][A-Za-z0-9._:+~-]{0,127}"
# An absolute path (etcd key, file): no "." or ".." segment, no empty one.
ABS_PATH = r"(?:/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}){1,32}"
# A bearer token (RFC 6750 b64token).
TOKEN = r"[A-Za-z0-9._~+/-]{1,8192}=*"
# ISO 8601 times: exactly the dates that exist (leap days included), an optional
# time to the microsecond and offset (the activity stream's ?since= and ?until=).
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[13579][26]|[2468][048]|0[48])00)"
ISO_DATE = (rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
            rf"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
            rf"|{_LEAP}-02-29)")
ISO_CLOCK = r"(?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?)?"
ISO_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
ISO_TIME = rf"{ISO_DATE}(?:T{ISO_CLOCK}{ISO_OFFSET}?)?"
#: A time in UTC: a date and a clock, "Z", "+00:00" or nothing after it.
UTC_TIME = rf"{ISO_DATE}T{ISO_CLOCK}(?:Z|\+00:00)?"
# PEM certificates, as a CA bundle is written; the only option that may hold newlines.
# (Unbounded repeats, bounded by the schema's maxLength: each line ends at its newline
# and each certificate at its END line, so matching stays linear.)
PEM_BUNDLE = (r"(?:-----BEGIN CERTIFICATE-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+"
              r"-----END CERTIFICATE-----(?:\r?\n)*)+")
BASE64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
# Private keys are small: 16 KiB is four times an RSA-8192 key in PEM.
PRIVATE_KEY_MAX = 16 * 1024
PERCENT = r"(?:100|[1-9][0-9]?)%"
STORE_SOURCE = r"[a-z][a-z0-9_]{0,31}"
# JSON request bodies nest at most this deep (objects and arrays).
MAX_DEPTH = 32
# Bootstrap settings (admin config; they reach package sources and files on hosts).
KUBERNETES_MINOR = r"1\.[1-9][0-9]"  # a pkgs.k8s.io minor, as "1.35"
RELEASE_VERSION = r"v[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}"
SHA256_HEX = r"[0-9A-Fa-f]{64}"
PGP_FINGERPRINT = r"[0-9A-Fa-f]{40}"  # an OpenPGP v4 fingerprint, without spaces
# An ASCII-armored OpenPGP public key (RFC 4880 6.2): armor headers of plain text
# (Comment: ...), a blank line, base64 lines, an optional "=" CRC line. (Unbounded
# repeats, bounded by the setting's length limit; each line ends at its newline.)
PGP_PUBLIC_KEY = (r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n"
                  r"(?:[A-Za-z][A-Za-z0-9-]{0,31}: [A-Za-z0-9 .,:@<>()/+_=-]{0,200}\r?\n)*"
                  r"\r?\n(?:[A-Za-z0-9+/=]{1,80}\r?\n)+"
                  r"-----END PGP PUBLIC KEY BLOCK-----(?:\r?\n)*")
PGP_PUBLIC_KEY_MAX = 64 * 1024


def anchored(pattern: str) -> str:
    """The pattern as a JSON Schema `pattern` that must match the whole string."""
    return f"^(?:{pattern})$"


def string(pattern: str, max_length: int | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON schema for strings that match `pattern` in full."""
    schema: dict[str, Any] = {"type": "string", "pattern": anchored(pattern)}
    if max_length is not None:
        schema["maxLength"] = max_length
    schema.update(extra)
    return schema


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def full_match(pattern: str, value: object) -> bool:
    return isinstance(value, str) and _compiled(pattern).fullmatch(value) is not None


# -- identifiers ----------------------------------------------------------------


def validate_address(address: object, field: str = "address") -> str:
    """The canonical form of an IPv4 address, IPv6 address (no zone) or DNS name."""
    if not isinstance(address, str) or len(address) > ADDRESS_MAX \
            or not full_match(ADDRESS, address):
        shown = repr(address)[:80] if isinstance(address, str) else type(address).__name__
        raise ValidationError(
            f"must be an IPv4 address, IPv6 address (no zone id) or DNS name (got {shown})",
            field=field)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    return address.removesuffix(".").lower()


def validate_name(name: object, field: str = "name") -> str:
    """Names of clusters, networks and container managers: safe in keys and paths."""
    if not full_match(NAME, name):
        raise ValidationError(
            "must be 1-63 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            field=field,
        )
    return str(name)


def validate_pattern(value: object, pattern: str, field: str, what: str) -> str:
    """`value` if it matches `pattern` in full; else a 400 naming the field."""
    if not full_match(pattern, value):
        raise ValidationError(f"must be {what}", field=field)
    return str(value)


def validate_base64(value: object, field: str) -> bytes:
    """Decode strict base64 (no newlines), naming the field when it is not."""
    if not isinstance(value, str) or not value:
        raise ValidationError("must be a non-empty base64 string", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("is not valid base64 (encode with base64 -w0)", field=field) from None


# -- JSON bodies ----------------------------------------------------------------


class _NonFinite:
    """Stands for NaN/Infinity while parsing, so the error can name its field."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> Any:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        return _NonFinite(text)
    # JSON Schema counts 3.0 as an integer: keep it one, so it is stored as 3.
    return int(value) if value.is_integer() else value


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object, refused when a key repeats: the last one would silently win, and
    another JSON parser (a proxy, a log reader) may keep the first."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def loads(raw: bytes | str) -> Any:
    """Parse a request body: finite numbers only, no repeated keys, at most MAX_DEPTH
    levels deep.

    A failure is a 400 (BadJSON or ValidationError naming the field), never a
    RecursionError or a NaN that would later be echoed as invalid JSON.
    """
    try:
        data = json.loads(raw, parse_constant=_NonFinite, parse_float=_parse_float,
                          object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ValidationError("is given twice", field=exc.key[:64]) from None
    except RecursionError:
        raise BadJSON(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJSON(f"the request body is not valid JSON: {exc}") from None
    _check_tree(data)
    return data


def _check_tree(data: object) -> None:
    """Depth and finiteness, checked without recursion (the tree may be deep)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _NonFinite):
            raise ValidationError(f"must be a finite number (got {value.text[:20]})",
                                  field=".".join(path) or None)
        if isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                raise ValidationError(f"nests deeper than {MAX_DEPTH} levels",
                                      field=".".join(path[:3]) or None)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*path, str(k))) for k, v in items)


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Any:
    """`pattern`, with ECMA's meaning of an anchored pattern: the whole string."""
    if not validator.is_type(instance, "string"):
        return
    if pattern.startswith("^") and pattern.endswith("$"):
        matched = _compiled(pattern[1:-1]).fullmatch(instance) is not None
    else:
        matched = _compiled(pattern).search(instance) is not None
    if not matched:
        yield SchemaError(f"{instance[:80]!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def check_schema(schema: dict[str, Any], body: object) -> None:
    """Validate `body` against a JSON schema; the error names the field and why."""
    error = best_match(_Validator(schema).iter_errors(body))
    if error is None:
        return
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        field = ".".join(filter(None, [path, extra[0] if extra else ""]))
        raise ValidationError(
            "is not a known field; allowed fields are: " + (", ".join(sorted(allowed)) or "none"),
            field=field)
    if error.validator in ("required", "dependentRequired"):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        raise ValidationError("is required" + _when(error),
                              field=".".join(filter(None, [path, *_first_required(
                                  error.schema, missing)])))
    alternatives = _required_alternatives(error)
    if alternatives:
        raise ValidationError(f"is required (or {', '.join(alternatives[1:])})",
                              field=".".join(filter(None, [path, alternatives[0]])))
    raise ValidationError(_describe(error), field=path or None)


def _first_required(schema: object, missing: str) -> list[str]:
    """`missing`, then the first field each level below it requires: a missing object
    is reported as its first missing field (options -> options.address)."""
    names = [missing]
    sub = schema.get("properties", {}).get(missing) if isinstance(schema, dict) else None
    while isinstance(sub, dict) and sub.get("required"):
        names.append(sub["required"][0])
        sub = sub.get("properties", {}).get(sub["required"][0])
    return names


def _required_alternatives(error: SchemaError) -> list[str]:
    """Field names of an `anyOf` of `required`s (server_url or apiserver)."""
    branches = error.validator_value if error.validator == "anyOf" else None
    if not isinstance(branches, list) or not all(
            isinstance(b, dict) and set(b) == {"required"} for b in branches):
        return []
    return [b["required"][0] for b in branches]


def _when(error: SchemaError) -> str:
    if error.validator == "dependentRequired":
        return " with the fields given"
    return ""


def _describe(error: SchemaError) -> str:
    kind = error.validator
    described = error.schema.get("description") if isinstance(error.schema, dict) else None
    if kind in ("pattern", "maxLength", "minLength", "anyOf", "oneOf", "maxProperties") \
            and described:
        return f"must be {described}"
    if kind == "type":
        return f"must be of type {error.validator_value}"
    if kind == "enum":
        return "must be one of: " + ", ".join(map(str, error.validator_value))
    if kind == "const":
        return f"must be {error.validator_value!r}"
    if kind == "minimum":
        return f"must be at least {error.validator_value}"
    if kind == "maximum":
        return f"must be at most {error.validator_value}"
    if kind == "exclusiveMinimum":
        return f"must be more than {error.validator_value}"
    if kind == "maxLength":
        return f"must be at most {error.validator_value} characters"
    if kind == "minLength":
        return f"must be at least {error.validator_value} characters"
    if kind == "maxItems":
        return f"must have at most {error.validator_value} items"
    if kind == "maxProperties":
        return f"must have at most {error.validator_value} fields"
    if kind == "minProperties":
        return f"must have at least {error.validator_value} field(s)"
    if kind == "pattern":
        return "does not have the expected format"
    # Never echo the instance: it may be long or secret.
    return "is not valid here"
