"""The all-in-one checks every service's settings before it serves anything: a bad
one is a one-line error naming the service and the setting, exit status 2, and no
port is opened (its services are built inside the server's worker, where the same
mistake used to be a worker traceback and exit 3)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port

ALLINONE = str(Path(sys.executable).parent / "commissaire-allinone")


@pytest.mark.parametrize("services, named", [
    ({"investigator": {"release-mirror": "ftp://x/$(id)"}}, "investigator: release-mirror"),
    ({"investigator": {"package-mirror": {}}}, "did you mean package-mirrors?"),
    ({"watcher": {"ssh-allowed-networks": ["10.0.0.0/33"]}}, "watcher: ssh-allowed-networks"),
    ({"containermgr": {"allowed-urls": ["gopher://x"]}}, "containermgr: allowed-urls"),
    ({"investigatr": {}}, "investigatr: not a service"),
    ({"watcher": []}, "watcher: its settings must be a JSON object"),
])
def test_a_bad_service_setting_stops_the_allinone_before_it_serves(
        tmp_path: Path, services: dict, named: str) -> None:
    config = tmp_path / "services.json"
    config.write_text(json.dumps(services))
    port = free_port()
    done = subprocess.run([ALLINONE, "-i", "127.0.0.1", "-p", str(port), "--data-dir",
                           str(tmp_path / "data"), "--services-config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout
