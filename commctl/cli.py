"""commctl's argument tree (seed chapter 6) and main(): one ladder from errors to exit codes.

Global options go before the command: -c/--config FILE and -o/--output FORMAT.
-o FORMAT is also accepted after a command, except where the seed gives -o another
meaning there (network and container_manager create: -o/--options; user-data:
-o/--outfile); those take the long --output FORMAT.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from commctl import __version__, commands
from commctl.environment import Environment
from commctl.exitstatus import CommctlError, ExitStatus
from commctl.output import FORMATS
from commissaire.states import ACTIONS, HOST_STATUSES

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

OPERATIONS = {"restart": "restart the hosts", "upgrade": "upgrade the hosts' packages",
              "deploy": "deploy an OSTree version on the hosts"}


def max_unavailable(text: str) -> int | str:
    """N hosts or N% of them."""
    if re.fullmatch(r"[1-9][0-9]*", text):
        return int(text)
    if re.fullmatch(r"(100|[1-9][0-9]?)%", text):
        return text
    raise argparse.ArgumentTypeError("must be a number of hosts (N >= 1) or a percentage (1%-100%)")


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number >= 0")
    return int(text)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number >= 1")
    return int(text)


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError("must be a TCP port (1-65535)")
    return int(text)


def interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


class Parser(argparse.ArgumentParser):
    """argparse writing --help, --version and usage errors to the run's streams: left
    alone it writes them to sys.stdout and sys.stderr (httpie's way round it)."""

    environment: Environment | None = None

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        env = self.environment
        if env is not None:
            # argparse hands over sys.stdout for help and --version, sys.stderr for errors.
            if file is None or file is sys.stderr:
                file = env.stderr
            elif file is sys.stdout:
                file = env.stdout
        super()._print_message(message, file)


def _bind(parser: argparse.ArgumentParser, environment: Environment) -> None:
    """Give the parser and every subcommand's the run's Environment."""
    if isinstance(parser, Parser):
        parser.environment = environment
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _bind(child, environment)


def _format(parser: argparse.ArgumentParser, short: bool = True) -> None:
    names = ["-o", "--output"] if short else ["--output"]
    parser.add_argument(*names, dest="leaf_output", choices=FORMATS, metavar="FORMAT",
                        help="output format: table (default), json or yaml")


def _group(parent: argparse._SubParsersAction, name: str, help_text: str,
           aliases: Sequence[str] = ()) -> argparse._SubParsersAction:
    parser = parent.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def _leaf(parent: argparse._SubParsersAction, name: str, help_text: str, handler: object,
          output: str = "short") -> argparse.ArgumentParser:
    parser = parent.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    if output != "none":
        _format(parser, short=output == "short")
    return parser


def _cluster_commands(top: argparse._SubParsersAction) -> None:
    group = _group(top, "cluster", "clusters: groups of like hosts")
    leaf = _leaf(group, "create", "create a cluster", commands.cluster_create)
    leaf.add_argument("name", help="name of the cluster")
    leaf.add_argument("-n", "--network", default="default",
                      help="name of the network (default: default)")
    leaf.add_argument("-m", "--container-manager", metavar="NAME",
                      help="name of the container manager of the cluster's hosts")
    leaf.add_argument("-r", "--container-runtime", metavar="RUNTIME",
                      help="docker, containerd or cri-o (default: the OS profile's choice "
                           "for the container manager; kubernetes: containerd or cri-o, "
                           "openshift: cri-o)")
    leaf.add_argument("-t", "--type", help="ignored: replaced by --container-manager in API 0.1.0")
    leaf = _leaf(group, "delete", "delete clusters", commands.cluster_delete)
    leaf.add_argument("name", nargs="+", help="name of a cluster")
    leaf = _leaf(group, "get", "show a cluster", commands.cluster_get)
    leaf.add_argument("name", help="name of the cluster")
    _leaf(group, "list", "list the clusters", commands.names_list("clusters"))

    for operation, what in OPERATIONS.items():
        sub = _group(group, operation, f"{operation}s: {what}, a few at a time")
        leaf = _leaf(sub, "start", f"start a {operation} of a cluster's hosts",
                     commands.operation_start)
        leaf.set_defaults(operation=operation)
        leaf.add_argument("name", help="name of the cluster")
        if operation == "deploy":
            leaf.add_argument("version", help="the OSTree version to deploy")
        elif operation == "upgrade":
            # The seed's example passes one (`upgrade start datacenter1 7.2.2`), its
            # API takes none: accepted, and the operator told it is not used.
            leaf.add_argument("version", nargs="?", help="ignored: an upgrade goes to the "
                                                         "newest packages of the host's OS")
        leaf.add_argument("--max-unavailable", type=max_unavailable, metavar="N|N%",
                          help="hosts (or percent of them) that may be down at once, "
                               "counting hosts already unhealthy")
        leaf.add_argument("--failure-tolerance", type=non_negative, metavar="N",
                          help="host failures to tolerate before stopping (default: 0)")
        leaf.add_argument("--drain", dest="drain", action="store_true", default=None,
                          help="cordon and drain each node in the container manager first")
        leaf.add_argument("--no-drain", dest="drain", action="store_false",
                          help="do not cordon and drain")
        leaf.add_argument("--drain-timeout", type=positive, metavar="S",
                          help="seconds to wait for a drain")
        _watch_options(leaf)
        leaf = _leaf(sub, "status", f"show the progress of a cluster's {operation}",
                     commands.operation_status)
        leaf.set_defaults(operation=operation)
        leaf.add_argument("name", help="name of the cluster")
        _watch_options(leaf)
        leaf = _leaf(sub, "abort", f"abort a cluster's {operation} (hosts not started are "
                                   "skipped)", commands.operation_abort)
        leaf.set_defaults(operation=operation)
        leaf.add_argument("name", help="name of the cluster")


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--watch", action="store_true",
                        help="redraw the progress until the operation ends; exit 0 when it "
                             "finished, 1 when it failed or was aborted")
    parser.add_argument("--interval", type=interval, default=2.0, metavar="S",
                        help="seconds between two looks with --watch (default: 2)")


def _host_commands(top: argparse._SubParsersAction) -> None:
    group = _group(top, "host", "hosts: the machines Commissaire manages")
    leaf = _leaf(group, "create", "add a host (the server then investigates and bootstraps it)",
                 commands.host_create)
    leaf.add_argument("address", help="address or DNS name of the host")
    leaf.add_argument("ssh_priv_key", nargs="?", metavar="SSH_PRIV_KEY",
                      help="the operator's copy of the SSH private key that logs in to the host")
    leaf.add_argument("-s", "--ssh-priv-key", dest="ssh_priv_key_option", metavar="FILE",
                      help="the same, as an option")
    leaf.add_argument("-c", "--cluster", help="add the host to this cluster")
    leaf.add_argument("-u", "--remote-user", default="root",
                      help="user to log in as over SSH (default: root)")
    leaf.add_argument("-p", "--ssh-port", type=port, help="SSH port of the host (default: 22)")
    leaf = _leaf(group, "delete", "delete hosts (they leave their cluster)", commands.host_delete)
    leaf.add_argument("address", nargs="+", help="address of a host")
    leaf = _leaf(group, "get", "show a host", commands.host_get)
    leaf.add_argument("address", help="address of the host")
    leaf = _leaf(group, "list", "list hosts, all or those of a cluster", commands.host_list)
    leaf.add_argument("cluster", nargs="?", help="only the hosts of this cluster")
    leaf.add_argument("--status", choices=HOST_STATUSES, help="only hosts with this status")
    leaf = _leaf(group, "status", "show a host's status and its node's in the container manager",
                 commands.host_status)
    leaf.add_argument("address", help="address of the host")
    leaf = _leaf(group, "ssh", "ssh to a host with the key and user the server keeps for it",
                 commands.host_ssh, output="none")
    leaf.add_argument("address", help="address of the host")
    leaf.add_argument("extra", nargs=argparse.REMAINDER, metavar="SSH_ARGS",
                      help="ssh options (e.g. -v -p 2222), then an optional remote command; "
                           "put -- first to pass options commctl would take, e.g. -- -h")
    leaf = _leaf(group, "join", "add an existing host to a cluster", commands.host_join)
    leaf.add_argument("address", help="address of the host")
    leaf.add_argument("cluster", help="name of the cluster")
    leaf = _leaf(group, "unjoin", "take a host out of its cluster (the host record stays)",
                 commands.host_unjoin)
    leaf.add_argument("address", help="address of the host")
    leaf.add_argument("cluster", nargs="?", help="name of the cluster (default: the host's)")


def _record_commands(top: argparse._SubParsersAction) -> None:
    group = _group(top, "network", "networks: flannel configuration of a cluster's hosts")
    leaf = _leaf(group, "create", "create a network", commands.network_create, output="long")
    leaf.add_argument("name", help="name of the network")
    leaf.add_argument("-t", "--type", choices=("flannel_etcd", "flannel_server"),
                      default="flannel_etcd", help="type of the network (default: flannel_etcd)")
    leaf.add_argument("-o", "--options", default="{}", metavar="JSON",
                      help='options as a JSON object, or @FILE (default: "{}"); '
                           'flannel_server needs {"address": "HOST:PORT"}')
    leaf = _leaf(group, "delete", "delete networks", commands.record_delete("network", "network"))
    leaf.add_argument("name", nargs="+", help="name of a network")
    leaf = _leaf(group, "get", "show a network", commands.record_get("network"))
    leaf.add_argument("name", help="name of the network")
    _leaf(group, "list", "list the networks", commands.names_list("networks"))

    group = _group(top, "container_manager", "container managers: the Kubernetes or OpenShift "
                   "API a cluster's hosts join as nodes", aliases=["container-manager"])
    leaf = _leaf(group, "create", "create a container manager", commands.container_manager_create,
                 output="long")
    leaf.add_argument("name", help="name of the container manager")
    leaf.add_argument("type", nargs="?", choices=("openshift", "kubernetes", "trivial"),
                      help="openshift, kubernetes or trivial")
    leaf.add_argument("options", nargs="?", metavar="OPTIONS",
                      help='options as a JSON object, or @FILE, e.g. {"server_url": '
                           '"https://api:6443", "token": "..."} (default: {})')
    leaf.add_argument("-t", "--type", dest="type_option",
                      choices=("openshift", "kubernetes", "trivial"), help="the same as TYPE")
    leaf.add_argument("-o", "--options", dest="options_option", metavar="JSON",
                      help="the same as OPTIONS")
    leaf = _leaf(group, "delete", "delete container managers",
                 commands.record_delete("container manager", "containermanager"))
    leaf.add_argument("name", nargs="+", help="name of a container manager")
    leaf = _leaf(group, "get", "show a container manager (secret options masked)",
                 commands.record_get("containermanager"))
    leaf.add_argument("name", help="name of the container manager")
    _leaf(group, "list", "list the container managers", commands.names_list("containermanagers"))


def _token_commands(top: argparse._SubParsersAction) -> None:
    group = _group(top, "token", "API tokens: bearer credentials for scripts and machines "
                   "(admins only)")
    leaf = _leaf(group, "create", "create a token and print it (shown only this once)",
                 commands.token_create)
    leaf.add_argument("name", help="name of the token")
    leaf.add_argument("-r", "--role", required=True,
                      choices=("viewer", "operator", "admin", "registrar"),
                      help="what the token may do")
    leaf.add_argument("-c", "--cluster", action="append", metavar="CLUSTER",
                      help="limit the token to this cluster (repeat for more; default: all)")
    leaf.add_argument("-e", "--expires", type=commands.duration, metavar="DURATION",
                      help="expire after this long: seconds, or 90m, 12h, 30d, 2w "
                           "(default: never)")
    _leaf(group, "list", "list the tokens (never their secrets)", commands.token_list)
    leaf = _leaf(group, "get", "show a token (never its secret)", commands.token_get)
    leaf.add_argument("name", help="name of the token")
    leaf = _leaf(group, "revoke", "revoke tokens: refused from their next use",
                 commands.token_revoke)
    leaf.add_argument("name", nargs="+", help="name of a token")


def _helper_commands(top: argparse._SubParsersAction) -> None:
    leaf = _leaf(top, "passhash", "print a bcrypt hash of a password for the server's users "
                 "file", commands.passhash_command, output="none")
    leaf.add_argument("-p", "--password", help="the password (visible in shell history and ps: "
                      "prefer the prompt or --file)")
    leaf.add_argument("-f", "--file", help="read the password from FILE (- for stdin)")
    leaf.add_argument("-r", "--rounds", type=int, default=12,
                      help="bcrypt cost: 2^N rounds (default: 12)")

    leaf = _leaf(top, "user-data", "write a cloud-init user-data file that registers new hosts "
                 "at first boot", commands.userdata_command, output="none")
    leaf.add_argument("-e", "--endpoint", action="append", metavar="URL",
                      help="Commissaire endpoint the host registers with (repeat for "
                           "fallbacks; default with --auth-from-config: the config's)")
    leaf.add_argument("-c", "--cluster", help="cluster the new hosts join")
    leaf.add_argument("-u", "--username", help="Commissaire user the host registers as")
    leaf.add_argument("-p", "--password", nargs="?", const=commands.PROMPT,
                      help="that user's password; -p alone prompts for it")
    leaf.add_argument("--auth-from-config", action="store_true",
                      help="use the credentials (and endpoints) of commctl's configuration")
    leaf.add_argument("-r", "--remote-user", default="root",
                      help="user the server logs in as over SSH (default: root)")
    leaf.add_argument("-s", "--ssh-key-path", required=True, metavar="PRIVATE_KEY",
                      help="the private key the server logs in with (sent, base64, when the "
                           "host registers)")
    leaf.add_argument("-a", "--authorized-keys-path", metavar="PUBLIC_KEYS",
                      help="public key(s) cloud-init authorizes for the remote user "
                           "(default: PRIVATE_KEY.pub when it exists)")
    leaf.add_argument("--ssh-port", type=port, help="SSH port of the hosts (default: 22)")
    leaf.add_argument("--address-source", metavar="SOURCE",
                      help="how the host finds the address the server can reach it at: auto "
                           "(metadata if it answers within 2 s, else interface; the default "
                           "with credentials), "
                           "metadata (cloud metadata service: public-ipv4, then local-ipv4), "
                           "interface (source address of the route to the server), connection "
                           "(let the server use the connection's address: no NAT; the default "
                           "and the only choice without credentials), or an address")
    leaf.add_argument("--ca-cert", metavar="FILE",
                      help="CA certificate the host checks an https endpoint against")
    leaf.add_argument("-C", "--cloud-init", metavar="FILE",
                      help="a #cloud-config file to extend")
    leaf.add_argument("-o", "--outfile", metavar="FILE",
                      help="write to FILE (mode 0600) instead of stdout")
    leaf.add_argument("--script", action="store_true",
                      help="print only the register script (to run by hand with sh)")

    _leaf(top, "status", "show the health of the server, bus, store and services",
          commands.server_status)

    leaf = _leaf(top, "events", "show the activity stream: who changed what, from where, "
                 "how it ended (newest first)", commands.events_command)
    leaf.add_argument("--object", metavar="KIND[/KEY]",
                      help="host/ADDRESS, cluster/NAME (with its operations and members), "
                           "network/NAME or containermanager/NAME")
    leaf.add_argument("--actor", metavar="NAME", help="only what this user or service did")
    leaf.add_argument("--action", choices=ACTIONS, help="only this action")
    leaf.add_argument("--since", metavar="TIME",
                      help="ISO 8601 (UTC unless an offset is given), or 30s, 15m, 2h, 7d ago")
    leaf.add_argument("--until", metavar="TIME", help="the same, as the end")
    leaf.add_argument("--limit", type=positive, metavar="N",
                      help="at most N entries (default: the server's page, 100; with "
                           "--follow the latest 10 first)")
    leaf.add_argument("-f", "--follow", action="store_true",
                      help="then print new entries as they come, until interrupted")
    leaf.add_argument("--interval", type=interval, default=2.0, metavar="S",
                      help="seconds between two looks with --follow (default: 2)")


def build_parser(environment: Environment | None = None) -> argparse.ArgumentParser:
    """commctl's parser; with `environment`, it prints to its streams."""
    parser = Parser(
        prog="commctl", description="Command line client of the Commissaire REST API.",
        epilog="Exit status: 0 ok, 1 error, 2 usage, 3 authentication (401/403), 4 not found, "
               "5 conflict (409), 6 server error (5xx), 7 unreachable, 8 invalid input (400).")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="configuration file (default: $COMMCTL_CONFIG or ~/.commissaire.json)")
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", metavar="FORMAT",
                        help="output format: table (default), json or yaml")
    parser.add_argument("--version", action="version", version=f"commctl {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _cluster_commands(top)
    _host_commands(top)
    _record_commands(top)
    _token_commands(top)
    _helper_commands(top)
    if environment is not None:
        _bind(parser, environment)
    return parser


def main(argv: Sequence[str] | None = None,
         env: Environment | Mapping[str, str] | None = None) -> int:
    """Run commctl; its exit status. `env` is the run's Environment (default: this
    process's); a mapping stands for the process's variables alone, as before."""
    environment = env if isinstance(env, Environment) else Environment.from_process(env)
    parser = build_parser(environment)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else int(ExitStatus.USAGE)
    return _run(commands.Context(args, environment))


def _run(ctx: commands.Context) -> int:
    """The command's exit status, with its failure reported on stderr."""
    stderr = ctx.env.stderr
    try:
        return int(ctx.args.handler(ctx, ctx.args))
    except CommctlError as exc:
        print(f"commctl: {exc.message}", file=stderr)
        return int(exc.status)
    except KeyboardInterrupt:
        if ctx.env.stderr_isatty:
            print(file=stderr)  # the shell's prompt goes on a new line, not after ^C
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:  # `commctl host list | head`: the reader left, not an error
        stderr.close()
        return int(ExitStatus.OK)


if __name__ == "__main__":
    sys.exit(main())
