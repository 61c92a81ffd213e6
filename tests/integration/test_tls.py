"""The server over TLS (--tls-pemfile) verifying client certificates
(--tls-clientverifyfile) with the client-certificate plugin requiring a CN."""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.servers import free_port
from tools.stack import wait_http

pytestmark = pytest.mark.integration


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, issuer_key: ec.EllipticCurvePrivateKey | None = None,
          issuer: x509.Name | None = None, ca: bool = False
          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer or _name(cn)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    work = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = _cert("test CA", ca=True)
    (work / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server = _write(work / "server.pem", *_cert("127.0.0.1", ca_key, ca_cert.subject))
    operator = _write(work / "operator.pem", *_cert("operator", ca_key, ca_cert.subject))
    other = _write(work / "other.pem", *_cert("other", ca_key, ca_cert.subject))
    users = work / "users.json"
    users.write_text(json.dumps({"a": {"hash": bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()}}))
    port = free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "commissaire-allinone"), "--no-config-file",
         "-i", "127.0.0.1", "-p", str(port), "--data-dir", str(work / "data"),
         "--tls-pemfile", str(server), "--tls-clientverifyfile", str(work / "ca.pem"),
         "--authentication-plugin", "commissaire_http.authentication.httpauthclientcert:cn=operator",
         "--authentication-plugin", f"commissaire_http.authentication.httpbasicauth:filepath={users}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"https://127.0.0.1:{port}/api/v0"
    os.environ["REQUESTS_CA_BUNDLE"] = str(work / "ca.pem")
    try:
        wait_http(f"{base}/clusters", ("a", "a"), 60, alive=proc)
        yield {"base": base, "ca": str(work / "ca.pem"), "operator": str(operator),
               "other": str(other)}
    finally:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_client_certificate_with_the_required_cn_gets_in(tls_server: dict) -> None:
    response = requests.get(f"{tls_server['base']}/clusters", cert=tls_server["operator"],
                            verify=tls_server["ca"], timeout=10)
    assert response.status_code == 200, response.text


def test_a_certificate_with_another_cn_is_forbidden(tls_server: dict) -> None:
    response = requests.get(f"{tls_server['base']}/clusters", cert=tls_server["other"],
                            verify=tls_server["ca"], timeout=10)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 403


def test_without_certificate_basic_auth_still_works_and_nothing_is_refused(
        tls_server: dict) -> None:
    assert requests.get(f"{tls_server['base']}/clusters", verify=tls_server["ca"],
                        timeout=10).status_code == 401
    assert requests.get(f"{tls_server['base']}/clusters", auth=("a", "a"),
                        verify=tls_server["ca"], timeout=10).status_code == 200


def test_plain_http_is_not_served(tls_server: dict) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(tls_server["base"].replace("https", "http") + "/clusters", timeout=5)
