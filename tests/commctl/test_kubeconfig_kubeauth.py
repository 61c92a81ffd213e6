"""commctl with kubeconfig credentials against a live server whose only plugin is
kubeauth, which checks them with the Kubernetes stand-in's TokenReview over TLS
(the seed: "reuse the credentials from your kubeconfig")."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import make_server

import pytest
import yaml

from commctl.exitstatus import ExitStatus
from commissaire.config import ServerConfig
from commissaire_http.app import create_app
from commissaire_service.storage.repository import Repository
from commissaire_service.storage.service import StorageService
from tests.commctl.conftest import Commctl, LiveServer, _QuietHandler, _ThreadingServer
from tests.k8s_standin.server import TOKEN_REVIEWS, KubeStandIn
from tests.kubeauth.conftest import BINDINGS, plugin_entry
from tests.kubeauth.conftest import standin as standin  # noqa: F401 - the fixture
from tests.unit.fakes import DictStore, DirectBus, HandlerSet, ReversibleBox


@pytest.fixture
def kube_server(standin: KubeStandIn) -> Iterator[LiveServer]:  # noqa: F811
    bus = DirectBus()
    store = DictStore()
    storage = StorageService(Repository(HandlerSet(store), ReversibleBox()), notify=bus.notify)
    storage.ensure_default_network()
    bus.services["storage"] = storage
    config = ServerConfig(authentication_plugins=[plugin_entry(standin)],
                          role_bindings=BINDINGS)
    httpd = make_server("127.0.0.1", 0, create_app(config, bus), server_class=_ThreadingServer,
                        handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{httpd.server_port}", storage, bus, store)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def kubectl_user(tmp_path: Path, capsys: pytest.CaptureFixture[str], kube_server: LiveServer,
                 monkeypatch: pytest.MonkeyPatch) -> Commctl:
    home = tmp_path / "home"
    home.mkdir()
    return Commctl(home, capsys, kube_server, monkeypatch)


def write_kubeconfig(path: Path, current: str, users: dict[str, dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "k", "cluster": {"server": "https://k8s.invalid:6443"}}],
        "contexts": [{"name": f"ctx-{name}", "context": {"cluster": "k", "user": name}}
                     for name in users],
        "users": [{"name": name, "user": user} for name, user in users.items()]}))


def test_the_current_context_token_is_sent_as_bearer(kubectl_user: Commctl,
                                                     standin: KubeStandIn,  # noqa: F811
                                                     tmp_path: Path) -> None:
    standin.add_token("viewer-token", "vera", ["system:authenticated", "k8s-viewers"])
    standin.add_token("admin-token", "ada", ["k8s-admins"])
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "ctx-vera", {"vera": {"token": "viewer-token"},
                                              "ada": {"token": "admin-token"}})
    # username/password are ignored in favour of the kubeconfig (the seed's note).
    kubectl_user.configure(endpoint=kubectl_user.server.url, password="ignored",
                           kubeconfig=str(kubeconfig))
    assert kubectl_user("cluster", "list").code == ExitStatus.OK
    refused = kubectl_user("cluster", "create", "c1")
    assert refused.code == ExitStatus.AUTH
    assert "needs the admin role; you are viewer" in refused.err
    write_kubeconfig(kubeconfig, "ctx-ada", {"vera": {"token": "viewer-token"},
                                             "ada": {"token": "admin-token"}})
    assert kubectl_user("cluster", "create", "c1").code == ExitStatus.OK
    assert kubectl_user("cluster", "list").out.split() == ["c1"]
    assert standin.count("POST", TOKEN_REVIEWS) == 2  # one per token: answers are cached


def test_a_token_file_relative_to_the_kubeconfig(kubectl_user: Commctl,
                                                 standin: KubeStandIn,  # noqa: F811
                                                 tmp_path: Path) -> None:
    standin.add_token("projected-token", "system:serviceaccount:ops:deployer")
    (tmp_path / "token").write_text("projected-token\n")
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "ctx-sa", {"sa": {"tokenFile": "token"}})
    kubectl_user.configure(endpoint=kubectl_user.server.url, username=None, password=None,
                           kubeconfig=str(kubeconfig))
    assert kubectl_user("cluster", "list").code == ExitStatus.OK


def test_a_token_kubernetes_does_not_know_is_an_auth_failure(kubectl_user: Commctl,
                                                             tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "ctx-x", {"x": {"token": "expired-token"}})
    kubectl_user.configure(endpoint=kubectl_user.server.url, username=None, password=None,
                           kubeconfig=str(kubeconfig))
    result = kubectl_user("cluster", "list")
    assert result.code == ExitStatus.AUTH
    assert "expired-token" not in result.err + result.out


def test_the_api_down_is_a_server_failure_not_bad_credentials(kubectl_user: Commctl,
                                                              standin: KubeStandIn,  # noqa: F811
                                                              tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "ctx-x", {"x": {"token": "some-token"}})
    kubectl_user.configure(endpoint=kubectl_user.server.url, username=None, password=None,
                           kubeconfig=str(kubeconfig))
    standin.stop()
    result = kubectl_user("cluster", "list")
    assert result.code == ExitStatus.SERVER
    assert "cannot be reached" in result.err
