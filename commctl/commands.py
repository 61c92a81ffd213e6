"""What each command does: the REST call, and how its answer is shown to people.

Every handler takes the run's Context and the parsed arguments and returns an
exit status; failures are raised as CommctlError and reported by cli.main.
"""
from __future__ import annotations

import argparse
import base64
import json
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

from commctl import events, passhash, sshcmd, userdata, watch
from commctl.client import Answer, ApiError, Client, path
from commctl.config import config_path, load_settings
from commctl.environment import Environment
from commctl.exitstatus import CommctlError, ExitStatus
from commctl.output import columns, emit, key_values, kib

Args = Any  # argparse.Namespace: attributes differ per command


class Context:
    """One run: its Environment, the output format and, when first needed, the
    configuration and the HTTP client."""

    def __init__(self, args: Args, env: Environment) -> None:
        self.args = args
        self.env = env

    @property
    def fmt(self) -> str:
        """-o given after the command wins over -o given before it."""
        return getattr(self.args, "leaf_output", None) or self.args.output

    def warn(self, text: str) -> None:
        print(f"commctl: {text}", file=self.env.stderr)

    @cached_property
    def client(self) -> Client:
        explicit = self.args.config or self.env.environ.get("COMMCTL_CONFIG")
        settings = load_settings(config_path(self.args.config, self.env), bool(explicit),
                                 self.env)
        return Client(settings, warn=self.warn, environ=self.env.environ)

    def show(self, data: Any, table: Callable[[Any], str] | None = None) -> None:
        emit(data, self.fmt, self.env.stdout, table)


def _said(text: str) -> Callable[[Any], str]:
    """A table rendering that is one sentence."""
    return lambda _: text


def _stored(kind: str, name: str, answer: Answer) -> Callable[[Any], str]:
    """Table text for a create: 201 made it, 200 means an identical one was there."""
    if answer.status == 201:
        return _said(f"Created {kind} {name}.")
    return _said(f"{kind.capitalize()} {name} already exists with these settings (unchanged).")


def _delete_each(ctx: Context, kind: str, segment: str, names: list[str]) -> int:
    """DELETE each name; go on after a failure, and exit with the first failure's status."""
    status = ExitStatus.OK
    for name in names:
        try:
            answer = ctx.client.delete(path(segment, name))
        except ApiError as exc:
            if len(names) == 1:
                raise
            ctx.warn(exc.message)
            status = status or exc.status
            continue
        ctx.show(answer.data, _said(f"Deleted {kind} {name}."))
    return status


def json_option(value: str) -> dict[str, Any]:
    """An --options value: a JSON object, or @FILE holding one (keeps tokens out of
    the shell history)."""
    text = value
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise CommctlError(f"cannot read {value[1:]}: {exc.strerror}", ExitStatus.USAGE) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommctlError(f"options are not valid JSON: {exc}", ExitStatus.USAGE) from None
    if not isinstance(data, dict):
        raise CommctlError('options must be a JSON object, e.g. \'{"key": "value"}\'',
                           ExitStatus.USAGE)
    return data


# -- clusters ---------------------------------------------------------------

def cluster_create(ctx: Context, args: Args) -> int:
    if args.type is not None:
        ctx.warn("--type is ignored: cluster types were replaced by container managers "
                 "(--container-manager)")
    body: dict[str, Any] = {"network": args.network}
    if args.container_manager:
        body["container_manager"] = args.container_manager
    if args.container_runtime is not None:
        body["container_runtime"] = args.container_runtime
    answer = ctx.client.put(path("cluster", args.name), body)
    ctx.show(answer.data, _stored("cluster", args.name, answer))
    return ExitStatus.OK


def cluster_delete(ctx: Context, args: Args) -> int:
    return _delete_each(ctx, "cluster", "cluster", args.name)


def _cluster_table(data: dict[str, Any]) -> str:
    hosts = data.get("hosts") or {}
    shown = {k: v for k, v in data.items() if k != "hosts"}
    if shown.get("container_runtime") == "":
        shown["container_runtime"] = "default (the OS profile's)"
    text = key_values(shown)
    if hosts:
        text += (f"\nhosts: {hosts.get('total', 0)} total, {hosts.get('available', 0)} "
                 f"available, {hosts.get('unavailable', 0)} unavailable")
    return text


def cluster_get(ctx: Context, args: Args) -> int:
    ctx.show(ctx.client.get(path("cluster", args.name)).data, _cluster_table)
    return ExitStatus.OK


def names_list(segment: str) -> Callable[[Context, Args], int]:
    def handler(ctx: Context, _args: Args) -> int:
        ctx.show(ctx.client.get(segment).data)
        return ExitStatus.OK
    return handler


def operation_start(ctx: Context, args: Args) -> int:
    body: dict[str, Any] = {}
    if args.operation == "deploy":
        body["version"] = args.version
    elif getattr(args, "version", None):
        ctx.warn(f"version {args.version!r} ignored: an upgrade installs the newest packages "
                 "of each host's OS (use `cluster deploy start` for a given OSTree version)")
    for name in ("max_unavailable", "failure_tolerance", "drain", "drain_timeout"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    answer = ctx.client.put(path("cluster", args.name, args.operation), body)
    if args.watch:
        return _follow(ctx, args)
    ctx.show(answer.data, lambda d: watch.render(d, args.operation))
    return ExitStatus.OK


def _follow(ctx: Context, args: Args) -> int:
    return watch.follow(ctx.client, args.name, args.operation, ctx.fmt, ctx.env.stdout,
                        args.interval, ctx.env.stdout_isatty)


def operation_status(ctx: Context, args: Args) -> int:
    if args.watch:
        return _follow(ctx, args)
    data = ctx.client.get(path("cluster", args.name, args.operation)).data
    ctx.show(data, lambda d: watch.render(d, args.operation))
    return ExitStatus.OK


def operation_abort(ctx: Context, args: Args) -> int:
    data = ctx.client.delete(path("cluster", args.name, args.operation)).data
    ctx.show(data, lambda d: watch.render(d, args.operation))
    return ExitStatus.OK


# -- hosts ------------------------------------------------------------------

HOST_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("ADDRESS", lambda h: h.get("address")), ("STATUS", lambda h: h.get("status")),
    ("CLUSTER", lambda h: h.get("cluster")), ("OS", lambda h: h.get("os")),
    ("CPUS", lambda h: h.get("cpus") or None), ("MEMORY", lambda h: kib(h.get("memory"))),
    ("SPACE", lambda h: kib(h.get("space"))), ("LAST CHECK", lambda h: h.get("last_check")),
]


def read_key_file(name: str) -> str:
    """The private key file's content, base64 without newlines as the API wants."""
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise CommctlError(f"cannot read the SSH private key {name}: {exc.strerror}",
                           ExitStatus.USAGE) from None
    if not data.strip():
        raise CommctlError(f"the SSH private key file {name} is empty", ExitStatus.USAGE)
    return base64.b64encode(data).decode()


def host_create(ctx: Context, args: Args) -> int:
    key_file = args.ssh_priv_key or args.ssh_priv_key_option
    if args.ssh_priv_key and args.ssh_priv_key_option:
        raise CommctlError("give the private key once: as SSH_PRIV_KEY or with -s",
                           ExitStatus.USAGE)
    if not key_file:
        raise CommctlError("host create needs the host's SSH private key file "
                           "(SSH_PRIV_KEY or -s/--ssh-priv-key FILE)", ExitStatus.USAGE)
    body: dict[str, Any] = {"ssh_priv_key": read_key_file(key_file),
                            "remote_user": args.remote_user}
    if args.cluster:
        body["cluster"] = args.cluster
    if args.ssh_port is not None:
        body["ssh_port"] = args.ssh_port
    answer = ctx.client.put(path("host", args.address), body)
    ctx.show(answer.data, _stored("host", args.address, answer))
    return ExitStatus.OK


def host_delete(ctx: Context, args: Args) -> int:
    return _delete_each(ctx, "host", "host", args.address)


def _host_table(host: dict[str, Any]) -> str:
    # The pinned host key is long; its fingerprint says the same to a person.
    shown = {**host, "memory": kib(host.get("memory")), "space": kib(host.get("space"))}
    return key_values(shown, hide=("ssh_host_key",))


def host_get(ctx: Context, args: Args) -> int:
    ctx.show(ctx.client.get(path("host", args.address)).data, _host_table)
    return ExitStatus.OK


def host_list(ctx: Context, args: Args) -> int:
    params = {}
    if args.cluster:
        params["cluster"] = args.cluster
    if args.status:
        params["status"] = args.status
    data = ctx.client.get("hosts", params=params).data
    ctx.show(data, lambda rows: columns(rows, HOST_COLUMNS) if rows else "No hosts.")
    return ExitStatus.OK


def host_status(ctx: Context, args: Args) -> int:
    ctx.show(ctx.client.get(path("host", args.address, "status")).data)
    return ExitStatus.OK


def host_ssh(ctx: Context, args: Args) -> int:
    return sshcmd.run(ctx.client, args.address, args.extra, ctx.env)


def host_join(ctx: Context, args: Args) -> int:
    answer = ctx.client.put(path("cluster", args.cluster, "hosts", args.address))
    ctx.show(answer.data, lambda _: f"Host {args.address} is in cluster {args.cluster}.")
    return ExitStatus.OK


def host_unjoin(ctx: Context, args: Args) -> int:
    cluster = args.cluster
    if not cluster:
        cluster = (ctx.client.get(path("host", args.address)).data or {}).get("cluster")
        if not cluster:
            raise CommctlError(f"host {args.address} is in no cluster")
    answer = ctx.client.delete(path("cluster", cluster, "hosts", args.address))
    ctx.show(answer.data, lambda _: f"Host {args.address} left cluster {cluster}.")
    return ExitStatus.OK


# -- networks and container managers ------------------------------------------

def network_create(ctx: Context, args: Args) -> int:
    body = {"type": args.type, "options": json_option(args.options)}
    answer = ctx.client.put(path("network", args.name), body)
    ctx.show(answer.data, _stored("network", args.name, answer))
    return ExitStatus.OK


def record_get(segment: str) -> Callable[[Context, Args], int]:
    def handler(ctx: Context, args: Args) -> int:
        ctx.show(ctx.client.get(path(segment, args.name)).data)
        return ExitStatus.OK
    return handler


def record_delete(kind: str, segment: str) -> Callable[[Context, Args], int]:
    def handler(ctx: Context, args: Args) -> int:
        return _delete_each(ctx, kind, segment, args.name)
    return handler


def container_manager_create(ctx: Context, args: Args) -> int:
    kind = args.type_option or args.type
    if args.type_option and args.type and args.type_option != args.type:
        raise CommctlError("the type is given twice, differently", ExitStatus.USAGE)
    if not kind:
        raise CommctlError("container_manager create needs a TYPE (openshift, kubernetes "
                           "or trivial)", ExitStatus.USAGE)
    if args.options is not None and args.options_option is not None:
        raise CommctlError("give the options once: as OPTIONS or with -o", ExitStatus.USAGE)
    options = args.options if args.options is not None else args.options_option
    body = {"type": kind, "options": json_option(options or "{}")}
    answer = ctx.client.put(path("containermanager", args.name), body)
    ctx.show(answer.data, _stored("container manager", args.name, answer))
    return ExitStatus.OK


# -- server status ------------------------------------------------------------

def _status_table(data: dict[str, Any]) -> str:
    rows = [{"part": "server", **(data.get("server") or {})},
            {"part": "bus", **(data.get("bus") or {})},
            {"part": "store", **(data.get("store") or {})}]
    rows += [{"part": f"service {name}", **value}
             for name, value in (data.get("services") or {}).items()]
    return f"Commissaire: {data.get('status', '?')}\n\n" + columns(rows, [
        ("PART", lambda r: r["part"]), ("STATUS", lambda r: r.get("status")),
        ("REASON", lambda r: r.get("reason"))])


def server_status(ctx: Context, _args: Args) -> int:
    """GET /status: shown even when the server says 503 (its body says what is down)."""
    answer = ctx.client.get("status", allow=(503,))
    ctx.show(answer.data, _status_table)
    return ExitStatus.OK if answer.status == 200 else ExitStatus.SERVER


# -- the activity stream ------------------------------------------------------------

def events_command(ctx: Context, args: Args) -> int:
    """GET /events with the filters given; --follow keeps printing new entries."""
    params = {name: value for name, value in (
        ("object", args.object), ("actor", args.actor), ("action", args.action),
        ("since", args.since and events.when(args.since)),
        ("until", args.until and events.when(args.until))) if value}
    if args.follow:
        return events.follow(ctx.client, params, ctx.fmt, ctx.env.stdout, args.interval,
                             args.limit or 10)
    if args.limit:
        params["limit"] = str(args.limit)
    ctx.show(ctx.client.get("events", params=params).data, events.table)
    return ExitStatus.OK


# -- local helpers: passhash and user-data -------------------------------------

def passhash_command(ctx: Context, args: Args) -> int:
    password = passhash.read_password(args.password, args.file, ctx.env.stdin,
                                      ctx.env.password_prompt())
    print(passhash.hash_password(password, args.rounds), file=ctx.env.stdout)
    return ExitStatus.OK


PROMPT = object()  # -p given without a value: ask for the password


def _userdata_authorization(ctx: Context, args: Args) -> tuple[str, list[str]]:
    """The Authorization header for the host to send, and endpoints from the config."""
    if args.auth_from_config:
        if args.username or args.password is not None:
            raise CommctlError("--auth-from-config and -u/-p exclude each other", ExitStatus.USAGE)
        settings = ctx.client.settings
        return settings.authorization(), settings.endpoints
    if args.password is not None and not args.username:
        raise CommctlError("-p/--password needs -u/--username", ExitStatus.USAGE)
    if not args.username:
        return "", []
    password = args.password
    if password is None or password is PROMPT:
        ask = ctx.env.password_prompt()
        if ask is None:
            raise CommctlError("no password for -u and stdin is not a terminal to ask for it "
                               "(pass -p PASSWORD)", ExitStatus.USAGE)
        password = ask(f"Commissaire password for {args.username}: ")
    return userdata.basic_authorization(args.username, password), []


def userdata_command(ctx: Context, args: Args) -> int:
    authorization, configured = _userdata_authorization(ctx, args)
    try:
        with open(args.ssh_key_path, "rb") as handle:
            private_key = handle.read()
    except OSError as exc:
        raise CommctlError(f"cannot read {args.ssh_key_path}: {exc.strerror}",
                           ExitStatus.USAGE) from None
    keys_file = args.authorized_keys_path
    if keys_file is None:
        candidate = args.ssh_key_path + ".pub"
        try:
            with open(candidate, encoding="utf-8"):
                keys_file = candidate
        except OSError:
            ctx.warn(f"no -a/--authorized-keys-path and no {candidate}: the image must "
                     "already authorize the key for the remote user")
    keys: list[str] = []
    if keys_file:
        try:
            with open(keys_file, encoding="utf-8") as handle:
                keys = userdata.public_keys(handle.read(), keys_file)
        except OSError as exc:
            raise CommctlError(f"cannot read {keys_file}: {exc.strerror}", ExitStatus.USAGE) from None
    ca_cert = ""
    if args.ca_cert:
        try:
            with open(args.ca_cert, encoding="utf-8") as handle:
                ca_cert = handle.read()
        except OSError as exc:
            raise CommctlError(f"cannot read {args.ca_cert}: {exc.strerror}", ExitStatus.USAGE) from None
    registration = userdata.Registration(
        endpoints=args.endpoint or configured, ssh_priv_key=private_key,
        cluster=args.cluster or "", remote_user=args.remote_user, ssh_port=args.ssh_port,
        authorization=authorization,
        address_source=args.address_source or ("auto" if authorization else "connection"),
        authorized_keys=keys, ca_cert=ca_cert)
    if args.script:
        text = userdata.script(registration)
    else:
        base = userdata.read_base(args.cloud_init) if args.cloud_init else None
        text = userdata.cloud_config(registration, base)
    if args.outfile and args.outfile != "-":
        userdata.write_private(args.outfile, text)
    else:
        ctx.env.stdout.write(text)
    return ExitStatus.OK


# -- API tokens ---------------------------------------------------------------------

_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhdw]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> int:
    """--expires: N seconds, or Ns, Nm, Nh, Nd, Nw."""
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise argparse.ArgumentTypeError("must be a duration such as 3600, 90m, 12h, 30d or 2w")
    return int(found.group(1)) * _SECONDS[found.group(2)]


TOKEN_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("NAME", lambda t: t.get("name")), ("ROLE", lambda t: t.get("role")),
    ("CLUSTERS", lambda t: ",".join(t.get("clusters") or []) or "(all)"),
    ("EXPIRES", lambda t: t.get("expires_at") or "never"),
    ("LAST USED", lambda t: t.get("last_used_at") or "never"),
    ("CREATED BY", lambda t: t.get("created_by")),
]


def token_create(ctx: Context, args: Args) -> int:
    """The token goes to stdout alone (table format), so `> file` keeps just it; the
    warning that it will not be shown again goes to stderr."""
    body: dict[str, Any] = {"role": args.role}
    if args.cluster:
        body["clusters"] = list(dict.fromkeys(args.cluster))
    if args.expires is not None:
        body["expires_in"] = args.expires
    answer = ctx.client.put(path("token", args.name), body)
    data = answer.data if isinstance(answer.data, dict) else {}
    scope = ", ".join(data.get("clusters") or []) or "all clusters"
    print(f"commctl: created token {args.name} (role {data.get('role')}, {scope}, expires "
          f"{data.get('expires_at') or 'never'}). It is shown only this once: store it now.",
          file=ctx.env.stderr)
    ctx.show(data, lambda d: str(d.get("token", "")))
    return ExitStatus.OK


def token_list(ctx: Context, _args: Args) -> int:
    data = ctx.client.get("tokens").data
    ctx.show(data, lambda rows: columns(rows, TOKEN_COLUMNS) if rows else "No tokens.")
    return ExitStatus.OK


def token_get(ctx: Context, args: Args) -> int:
    ctx.show(ctx.client.get(path("token", args.name)).data)
    return ExitStatus.OK


def token_revoke(ctx: Context, args: Args) -> int:
    """Revoke each name; go on after a failure, exit with the first failure's status."""
    status = ExitStatus.OK
    for name in args.name:
        try:
            answer = ctx.client.delete(path("token", name))
        except ApiError as exc:
            if len(args.name) == 1:
                raise
            ctx.warn(exc.message)
            status = status or exc.status
            continue
        ctx.show(answer.data, _said(f"Revoked token {name}."))
    return status
