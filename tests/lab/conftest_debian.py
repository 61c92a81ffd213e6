"""Fixtures and helpers for lab tests that run the real *debian* OS profile.

Load the fixtures in a test module with::

    pytest_plugins = ["tests.lab.conftest_debian"]

Fixtures:

* ``apt_repos`` (session): tests.support.aptmirror.AptRepos — the local signed
  Debian mirror (docker.io, ca-certificates, python3-apt and what they need),
  and pkgs.k8s.io-like flat repositories (kubelet, cri-o) under
  ``upstream`` / ``wrong_key_upstream`` / ``empty_upstream``, all on
  127.0.0.1. The first run on a machine downloads ~70 MB from deb.debian.org
  (about 10 s), later runs reuse the cache.
* ``release_server`` (session): tests.support.releases.ReleaseServer that
  serves the flanneld stand-in at flannel's upstream path for this machine's
  architecture (``release_server.files[flannel_path()]``: url, sha256, size);
  its access log (``downloads()``, ``log()``) says what was fetched.
* ``debian_lab`` (module): a Lab (reboot time 1 s); start hosts with
  ``tests.support.aptmirror.start_debian_hosts(debian_lab, apt_repos, n)``.

Import nothing from this module in a test module: pytest loads it as a plugin.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.support.aptmirror import AptRepos, serve_repos
from tests.support.releases import ReleaseServer
from tools.lab import Lab


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


@pytest.fixture(scope="session")
def apt_repos() -> Iterator[AptRepos]:
    with serve_repos(log=_log) as repos:
        yield repos


@pytest.fixture(scope="session")
def release_server() -> Iterator[ReleaseServer]:
    with ReleaseServer() as server:
        server.add_flannel()
        yield server


@pytest.fixture(scope="module")
def debian_lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("lab hosts need root (namespaces, overlayfs, chroot)", pytrace=False)
    with Lab(reboot_time=1.0) as lab:
        yield lab
