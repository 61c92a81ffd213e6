"""Make the credentials of a distributed deployment and fill the example configs.

The bus (Redis) and the store (etcd) are trusted components: whoever can talk
to them can call `storage.reveal_creds` or read every record. This writes

- a Redis ACL include (`--redis-include`): the `default` user off, one user
  `commissaire` with a new random password and no administration commands;
- a CA, an etcd server certificate and a client certificate (`ETC/etcd/`), and
  an etcd environment file (`--etcd-env`) serving TLS that requires client
  certificates of that CA (`ETCD_CLIENT_CERT_AUTH`), peers included;
- the password into every `ETC/*.conf` whose bus-uri holds the placeholder
  CHANGE-ME-BUS-PASSWORD (files 0640: the commissaire group reads them).

Run once as root on the controller (see the README, "Distributed mode"):

    python3 tools/distributed_trust.py --etc /etc/commissaire \\
        --redis-include /etc/redis/commissaire-acl.conf --etcd-env /etc/default/etcd

then add `include /etc/redis/commissaire-acl.conf` to redis.conf, give the
etcd user the server key, the commissaire user the client key, and restart.
An existing password or PKI is kept (run it again after adding a config file).
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.k8s_standin.tls import make_pki  # noqa: E402

PLACEHOLDER = "CHANGE-ME-BUS-PASSWORD"
USER = "commissaire"


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=mode)
    os.chmod(path, mode)
    path.write_text(text)


def _password(redis_include: Path) -> str:
    """The password already in the ACL include, or a new one."""
    if redis_include.exists():
        for line in redis_include.read_text().splitlines():
            words = line.split()
            if words[:3] == ["user", USER, "on"]:
                for word in words:
                    if word.startswith(">"):
                        return word[1:]
    return secrets.token_urlsafe(32)


def redis_acl(password: str) -> str:
    return ("# Commissaire's Redis: no anonymous client (tools/distributed_trust.py).\n"
            "user default off\n"
            f"user {USER} on >{password} ~* &* +@all -@admin\n")


def etcd_env(pki_dir: Path, address: str) -> str:
    client = f"https://{address}:2379"
    peer = f"https://{address}:2380"
    return "\n".join([
        "# etcd for Commissaire: TLS, client certificates of its own CA required.",
        "ETCD_NAME=default",
        f"ETCD_LISTEN_CLIENT_URLS={client}", f"ETCD_ADVERTISE_CLIENT_URLS={client}",
        f"ETCD_LISTEN_PEER_URLS={peer}", f"ETCD_INITIAL_ADVERTISE_PEER_URLS={peer}",
        f"ETCD_INITIAL_CLUSTER=default={peer}",
        f"ETCD_CERT_FILE={pki_dir / 'server.crt'}", f"ETCD_KEY_FILE={pki_dir / 'server.key'}",
        f"ETCD_TRUSTED_CA_FILE={pki_dir / 'ca.crt'}", "ETCD_CLIENT_CERT_AUTH=true",
        f"ETCD_PEER_CERT_FILE={pki_dir / 'server.crt'}",
        f"ETCD_PEER_KEY_FILE={pki_dir / 'server.key'}",
        f"ETCD_PEER_TRUSTED_CA_FILE={pki_dir / 'ca.crt'}", "ETCD_PEER_CLIENT_CERT_AUTH=true",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--etc", default="/etc/commissaire", type=Path,
                        help="directory of the Commissaire config files")
    parser.add_argument("--redis-include", default="/etc/redis/commissaire-acl.conf",
                        type=Path, help="Redis ACL file to write")
    parser.add_argument("--etcd-env", default="/etc/default/etcd", type=Path,
                        help="etcd environment file to write")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address etcd serves on (in its certificate)")
    args = parser.parse_args(argv)

    password = _password(args.redis_include)
    _write(args.redis_include, redis_acl(password), 0o640)
    pki_dir = args.etc / "etcd"
    if not (pki_dir / "ca.crt").exists():
        make_pki(pki_dir, name="commissaire-etcd", server_is_client=True, days=825,
                 hosts=tuple(dict.fromkeys([args.address, "127.0.0.1", "localhost"])))
    _write(args.etcd_env, etcd_env(pki_dir, args.address), 0o644)
    filled = []
    for conf in sorted(args.etc.glob("*.conf")):
        text = conf.read_text()
        if PLACEHOLDER in text:
            _write(conf, text.replace(PLACEHOLDER, password), 0o640)
            filled.append(conf.name)
    print(f"Redis ACL: {args.redis_include}; etcd: {args.etcd_env}, certificates in "
          f"{pki_dir}; bus password written to: {', '.join(filled) or 'no file'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
