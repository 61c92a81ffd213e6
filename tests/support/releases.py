"""Loopback file servers for lab tests: release files at upstream-like paths.

`FileServer` serves a directory read-only on 127.0.0.1 (a port the kernel
picks) from a thread of the test process, and logs every request, so a test
can tell what a host downloaded (a second bootstrap should download nothing).
Lab hosts share the machine's network, so they reach it at the same URL.

`ReleaseServer` is a FileServer whose files a test adds by their path under
the upstream base (e.g. ``flannel-io/flannel/releases/download/v0.27.4/
flanneld-amd64``, as under https://github.com/): the product's
``release-mirror`` setting pointed at ``server.url`` then finds them there.
Anything not added is a 404.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlsplit

FLANNEL_VERSION = "v0.27.4"
#: flanneld's path under https://github.com/ (playbooks/vars/sources.yml)
FLANNEL_PATH = "flannel-io/flannel/releases/download/{version}/flanneld-{arch}"
#: What stands in for flanneld: it is never run by systemd (there is none in a
#: lab host), but it runs, and says what it is.
FLANNELD_SCRIPT = """\
#!/bin/sh
# flanneld stand-in served by tests/support/releases.py
if [ "$1" = "--version" ] || [ "$1" = "-version" ]; then
    echo "{version}"
    exit 0
fi
echo "flanneld stand-in {version} ({arch}): $*"
"""


@dataclasses.dataclass(frozen=True)
class Access:
    """One request a FileServer answered."""

    method: str
    path: str  # URL path, percent-decoded, query dropped (e.g. "/flannel-io/...")
    status: int
    time: float
    client: str  # the client's address (a lab host's own 127.x address)


class FileServer:
    """Serves `root` read-only over HTTP on 127.0.0.1; see the module docstring.

    Start it with ``with FileServer(root) as server:`` (or start()/stop()).
    Symlinks under `root` are followed, so a cached tree can be linked in."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._log: list[Access] = []
        self._log_lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the file server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, e.g. "http://127.0.0.1:40123/"."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Self:
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: apt pipelines its requests

            def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
                super().__init__(*args, directory=str(server.root), **kwargs)

            def list_directory(self, path):  # type: ignore[no-untyped-def]
                self.send_error(404, "Not Found")  # no listings: a mirror has none either
                return None

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                status = int(code) if isinstance(code, int) or str(code).isdigit() else 0
                server._record(Access(self.command or "", unquote(urlsplit(self.path).path), status,
                                      time.time(), self.client_address[0]))

            def log_message(self, format: str, *args: object) -> None:
                pass  # recorded by log_request; nothing on stderr

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="file-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _record(self, access: Access) -> None:
        with self._log_lock:
            self._log.append(access)

    def log(self, since: float = 0.0) -> list[Access]:
        """Every request answered since `since` (epoch s), oldest first."""
        with self._log_lock:
            return [a for a in self._log if a.time >= since]

    def downloads(self, path_prefix: str = "/", since: float = 0.0) -> list[Access]:
        """Successful GETs (200) of paths under `path_prefix` since `since`."""
        return [a for a in self.log(since) if a.method == "GET" and a.status == 200
                and a.path.startswith(path_prefix)]


@dataclasses.dataclass(frozen=True)
class ReleaseFile:
    """A file a ReleaseServer serves."""

    path: str  # under the server's base URL, no leading slash
    url: str
    sha256: str
    size: int


class ReleaseServer(FileServer):
    """A FileServer of release files added by path; see the module docstring."""

    def __init__(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="commissaire-releases-")
        super().__init__(self._tmp)
        #: what it serves, by path
        self.files: dict[str, ReleaseFile] = {}

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def add(self, path: str, content: bytes | str, mode: int = 0o644) -> ReleaseFile:
        """Serve `content` at `path` (relative to the base URL; replaces a file there)."""
        data = content.encode() if isinstance(content, str) else content
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"not a relative file path: {path!r}")
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        os.replace(tmp, target)
        added = ReleaseFile("/".join(parts), self.url + "/".join(parts),
                            hashlib.sha256(data).hexdigest(), len(data))
        self.files[added.path] = added
        return added

    def remove(self, path: str) -> None:
        """Stop serving `path` (it becomes a 404)."""
        parts = [p for p in path.split("/") if p]
        self.root.joinpath(*parts).unlink(missing_ok=True)
        self.files.pop("/".join(parts), None)

    def add_flannel(self, version: str = FLANNEL_VERSION, arch: str | None = None) -> ReleaseFile:
        """A small shell script standing in for flanneld, at flannel's upstream
        path (flannel_path()); arch defaults to this machine's."""
        arch = arch or host_arch()
        return self.add(flannel_path(version, arch), FLANNELD_SCRIPT.format(version=version, arch=arch),
                        0o755)


def flannel_path(version: str = FLANNEL_VERSION, arch: str | None = None) -> str:
    """flanneld's path under https://github.com/ (and so under a release mirror)."""
    return FLANNEL_PATH.format(version=version, arch=arch or host_arch())


def host_arch() -> str:
    """This machine's (and so a lab host's) architecture in release-file terms."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
