"""The client configuration: ~/.commissaire.json (or -c FILE), seed chapter 6.

    {"endpoint": "http://host:8000" or ["http://a:8000", "http://b:8000"],
     "username": "a", "password": "a",          # password optional: prompted on a tty
     "kubeconfig": "~/.kube/config",            # optional: credentials of its current user
     "token": "cmt_...",                        # optional: an API token (or $COMMCTL_TOKEN)
     "verify": true | false | "/path/ca.pem",   # optional: TLS verification of https endpoints
     "client_cert": "cert.pem", "client_key": "key.pem",  # optional: TLS client certificate
     "timeout": 30}                              # optional: seconds to wait for an answer

As the seed says, when a kubeconfig is given its user wins over username/password.
An API token (`commctl token create`) wins over both: $COMMCTL_TOKEN first, then
the file's "token"; it is sent as `Authorization: Bearer` and never printed.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from commctl.environment import Environment
from commctl.exitstatus import CommctlError, ExitStatus

DEFAULT_FILE = "~/.commissaire.json"


@dataclass
class Settings:
    """What the HTTP client needs, resolved from the configuration file."""

    endpoints: list[str]
    # (user, password) for HTTP basic auth, or None.
    basic_auth: tuple[str, str] | None = None
    # Extra headers, e.g. an Authorization: Bearer token taken from a kubeconfig.
    headers: dict[str, str] = field(default_factory=dict)
    # requests' `cert`: (certificate, key) paths for TLS client authentication.
    cert: tuple[str, str] | None = None
    # requests' `verify`: True, False, or a CA bundle path.
    verify: bool | str = True
    timeout: float = 30.0

    def authorization(self) -> str:
        """The Authorization header value these credentials send ('' when none)."""
        if "Authorization" in self.headers:
            return self.headers["Authorization"]
        if self.basic_auth:
            user, password = self.basic_auth
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return ""


def _usage(message: str) -> CommctlError:
    return CommctlError(message, ExitStatus.USAGE)


def expand(path: str, env: Environment, relative_to: Path | None = None) -> Path:
    """~ from the run's HOME, else its home; relative paths from `relative_to`
    (kubeconfig paths are relative to the kubeconfig)."""
    if path.startswith("~"):
        home = env.environ.get("HOME") or env.home
        if not home:
            raise _usage(f"cannot expand {path}: no HOME (set it, or give a full path)")
        path = home + path[1:]
    result = Path(path)
    if relative_to is not None and not result.is_absolute():
        result = relative_to / result
    return result


def config_path(explicit: str | None, env: Environment) -> Path:
    return expand(explicit or env.environ.get("COMMCTL_CONFIG") or DEFAULT_FILE, env)


def read_config(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "" if explicit else (' (create it with {"endpoint": "http://HOST:8000", '
                                    '"username": "USER"} or pass -c FILE)')
        raise _usage(f"no configuration file {path}{hint}") from None
    except OSError as exc:
        raise _usage(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _usage(f"{path} is not valid JSON: {exc} (use double quotes, and no comma "
                     "after the last item)") from None
    if not isinstance(data, dict):
        raise _usage(f"{path} must hold a JSON object")
    return data


def endpoints_of(value: object, where: str) -> list[str]:
    """One endpoint or a list of them, each an http(s) URL, without trailing slash."""
    given = value if isinstance(value, list) else [value]
    items = [e for e in given if isinstance(e, str) and e.strip()]
    if not items or len(items) != len(given):
        raise _usage(f'{where}: "endpoint" must be a URL or a list of URLs; at least one '
                     "endpoint must be defined")
    result = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise _usage(f"{where}: endpoint {item!r} must start with http:// or https://")
        result.append(url)
    return result


def load_settings(path: Path, explicit: bool, env: Environment) -> Settings:
    """Settings from the file; a missing password is asked for on a terminal."""
    data = read_config(path, explicit)
    settings = Settings(endpoints=endpoints_of(data.get("endpoint"), str(path)))
    timeout = data.get("timeout", 30)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise _usage(f'{path}: "timeout" must be a positive number of seconds')
    settings.timeout = float(timeout)
    verify = data.get("verify", True)
    if not isinstance(verify, bool | str):
        raise _usage(f'{path}: "verify" must be true, false or a CA bundle path')
    settings.verify = str(expand(verify, env, path.parent)) if isinstance(verify, str) else verify
    if data.get("client_cert") or data.get("client_key"):
        if not (isinstance(data.get("client_cert"), str) and isinstance(data.get("client_key"), str)):
            raise _usage(f'{path}: "client_cert" and "client_key" go together')
        settings.cert = (str(expand(data["client_cert"], env, path.parent)),
                         str(expand(data["client_key"], env, path.parent)))
    token = env.environ.get("COMMCTL_TOKEN") or data.get("token")
    if token is not None:
        where = "COMMCTL_TOKEN" if env.environ.get("COMMCTL_TOKEN") else f'{path}: "token"'
        settings.headers["Authorization"] = f"Bearer {_checked_token(token, where)}"
        return settings
    if data.get("kubeconfig"):
        apply_kubeconfig(settings, expand(str(data["kubeconfig"]), env, path.parent), env)
        return settings
    username = data.get("username")
    if username is None:
        return settings  # no credentials: client certificate, or a server that needs none
    if not isinstance(username, str) or not username:
        raise _usage(f'{path}: "username" must be a non-empty string')
    password = data.get("password")
    if password is None:
        ask_password = env.password_prompt()
        if ask_password is None:
            raise _usage(f'{path} has no "password" for {username!r} and stdin is not a '
                         "terminal to ask for it")
        password = ask_password(f"Password for {username}: ")
    if not isinstance(password, str):
        raise _usage(f'{path}: "password" must be a string')
    settings.basic_auth = (username, password)
    return settings


def _checked_token(token: object, where: str) -> str:
    """An API token fit for a header (never echoed: a message names only where it is)."""
    if not isinstance(token, str) or not token.strip():
        raise _usage(f"{where} must be a non-empty string")
    token = token.strip()
    if len(token) > 8192 or not token.isascii() or not token.isprintable() or " " in token:
        raise _usage(f"{where} is not a token: it holds spaces, control or non-ASCII "
                     "characters (it is not shown here)")
    return token


def apply_kubeconfig(settings: Settings, path: Path, env: Environment) -> None:
    """Credentials of the kubeconfig's current user: a token, a user/password pair,
    or a client certificate (file paths)."""
    try:
        kube = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _usage(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _usage(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if not isinstance(kube, dict):
        raise _usage(f"kubeconfig {path} is not a kubeconfig")
    current = kube.get("current-context")
    context = next((c.get("context") or {} for c in kube.get("contexts") or []
                    if isinstance(c, dict) and c.get("name") == current), None)
    if context is None:
        raise _usage(f"kubeconfig {path}: no current context is set")
    user_name = context.get("user")
    user = next((u.get("user") or {} for u in kube.get("users") or []
                 if isinstance(u, dict) and u.get("name") == user_name), None)
    if user is None:
        raise _usage(f"kubeconfig {path}: cannot find user {user_name!r} of the current context")
    if user.get("tokenFile") and not user.get("token"):
        try:
            user["token"] = expand(user["tokenFile"], env, path.parent).read_text().strip()
        except OSError as exc:
            raise _usage(f"kubeconfig {path}: cannot read tokenFile: {exc.strerror}") from None
    if user.get("token"):
        settings.headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("username") and user.get("password"):
        settings.basic_auth = (str(user["username"]), str(user["password"]))
    elif user.get("client-certificate") and user.get("client-key"):
        settings.cert = (str(expand(user["client-certificate"], env, path.parent)),
                         str(expand(user["client-key"], env, path.parent)))
    else:
        raise _usage(f"kubeconfig {path}: user {user_name!r} has no token, username/password "
                     "or client-certificate/client-key file commctl can use")

