"""Steps on lab hosts (tools/lab): real sshd hosts on loopback that the control
plane investigates, bootstraps, watches and reboots over SSH. Only the REST API
drives the control plane; the lab is looked at from outside, as an operator
would look at a machine (its files, what its reboot and package commands were
asked to do, its boot id)."""
from __future__ import annotations

import base64
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from behave import given, then, when

from tests.k8s_standin.server import KubeStandIn
from tests.support.lab import DownMonitor, reboots, register_from_inside
from tests.support.waiting import wait_for
from tools.lab import Lab, LabHost

KUBE_TOKEN = "behave-token"


def _lab(context: Any) -> Lab:
    """One lab for the whole run, started on first use (closed in after_all)."""
    if not context.labs:
        context.labs.append(Lab(reboot_time=2.0))
    return context.labs[0]


def _host(context: Any, number: int) -> LabHost:
    return context.lab_hosts[number - 1]


def _get(context: Any, path: str) -> requests.Response:
    context.response = requests.get(context.base + path, auth=context.stack.auth, timeout=30)
    return context.response


def _register(context: Any, host: LabHost, cluster: str = "", key: str = "") -> None:
    body = {"ssh_priv_key": key or _lab(context).private_key_b64}
    if cluster:
        body["cluster"] = cluster
    response = requests.put(f"{context.base}/host/{host.address}", json=body,
                            auth=context.stack.auth, timeout=30)
    assert response.status_code == 201, response.text


def _wait(context: Any, check: Any, seconds: float, what: str) -> None:
    """wait_for(), failing with the last response the check saw."""
    try:
        wait_for(check, seconds, what, every=0.25)
    except AssertionError as exc:
        last = context.response.text if context.response is not None else "none"
        raise AssertionError(f"{exc}; last response: {last}") from None


# -- lab hosts ---------------------------------------------------------------

@given("{count:d} lab hosts")
@given("{count:d} lab host")
def lab_hosts(context: Any, count: int) -> None:
    context.lab_hosts = _lab(context).start_hosts(count)
    context.lab_since = time.time()
    context.boots = {h.address: h.boot_id() for h in context.lab_hosts}


@when("lab host {number:d} stops")
def host_stops(context: Any, number: int) -> None:
    _host(context, number).stop()


@when("lab host {number:d} starts again")
def host_starts(context: Any, number: int) -> None:
    _host(context, number).start()


@when("lab host {number:d} gets a new SSH host key")
def host_new_key(context: Any, number: int) -> None:
    _host(context, number).change_host_key()


@given('a Kubernetes API stand-in as container manager "{name}"')
def kube_standin(context: Any, name: str) -> None:
    """tests/k8s_standin: no real Kubernetes can run here (see the README)."""
    kube = KubeStandIn(token=KUBE_TOKEN).start()
    context.standins.append(kube)
    context.kube = kube
    response = requests.put(f"{context.base}/containermanager/{name}", json={
        "type": "kubernetes", "options": {"server_url": kube.url, "token": KUBE_TOKEN}},
        auth=context.stack.auth, timeout=30)
    assert response.status_code == 201, response.text


@then("the Kubernetes stand-in has a node for lab host {number:d}")
def kube_node(context: Any, number: int) -> None:
    address = _host(context, number).address
    assert context.kube.node(address) is not None, f"no node {address}"


@then("the watcher knows {count:d} hosts within {seconds:d} seconds")
def watcher_knows(context: Any, count: int, seconds: int) -> None:
    _wait(context, lambda: _get(context, "/status").json()["services"]["watcher"].get(
        "hosts_known") == count, seconds, f"the watcher knowing {count} hosts")


# -- registration ------------------------------------------------------------

@when('we register lab host {number:d} in cluster "{cluster}"')
def register_in(context: Any, number: int, cluster: str) -> None:
    _register(context, _host(context, number), cluster)


@when("we register lab host {number:d}")
def register(context: Any, number: int) -> None:
    _register(context, _host(context, number))


@when("we register lab host {number:d} with a key it does not accept")
def register_wrong_key(context: Any, number: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stranger"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
        key = base64.b64encode(path.read_bytes()).decode()
    _register(context, _host(context, number), key=key)


@when('we register every lab host in cluster "{cluster}"')
def register_all(context: Any, cluster: str) -> None:
    for host in context.lab_hosts:
        _register(context, host, cluster)


@when('lab host {number:d} registers itself in cluster "{cluster}"')
def register_itself(context: Any, number: int, cluster: str) -> None:
    """From inside the host, as its first boot would: PUT /host with no address."""
    answer = register_from_inside(_host(context, number), context.stack.port, context.stack.auth,
                                  {"ssh_priv_key": _lab(context).private_key_b64,
                                   "cluster": cluster})
    assert answer.startswith("201"), answer


# -- what the API shows --------------------------------------------------------

@then('lab host {number:d} is "{status}" within {seconds:d} seconds')
def host_status(context: Any, number: int, status: str, seconds: int) -> None:
    address = _host(context, number).address
    _wait(context, lambda: _get(context, f"/host/{address}").json().get("status") == status,
          seconds, f"{address} {status}")


@then('every lab host is "{status}" within {seconds:d} seconds')
def all_status(context: Any, status: str, seconds: int) -> None:
    for number in range(1, len(context.lab_hosts) + 1):
        host_status(context, number, status, seconds)


@then('cluster "{cluster}" lists lab host {number:d}')
def cluster_lists(context: Any, cluster: str, number: int) -> None:
    members = _get(context, f"/cluster/{cluster}/hosts").json()
    assert _host(context, number).address in members, members


@when("we DELETE the record of lab host {number:d}")
def delete_host(context: Any, number: int) -> None:
    context.response = requests.delete(f"{context.base}/host/{_host(context, number).address}",
                                       auth=context.stack.auth, timeout=30)


@when("we GET the status of lab host {number:d}")
def get_status(context: Any, number: int) -> None:
    _get(context, f"/host/{_host(context, number).address}/status")


@then("the response shows the facts of lab host {number:d}")
def shows_facts(context: Any, number: int) -> None:
    host = _host(context, number)
    record = context.response.json()
    assert record["os"] == "lab", record
    assert record["cpus"] >= 1 and record["memory"] > 0 and record["space"] > 0, record
    assert record["host_key_fingerprint"] == host.host_key_fingerprint(), record


# -- what happened on the hosts ----------------------------------------------

@then('lab host {number:d} has the file "{path}" containing "{text}"')
def host_file(context: Any, number: int, path: str, text: str) -> None:
    content = _host(context, number).read_file(path)
    assert text in content, f"{path}: {text!r} not in {content!r}"


@then('lab host {number:d} was asked to run "{command}"')
def host_asked(context: Any, number: int, command: str) -> None:
    asked = [" ".join([r["cmd"], *r["argv"]]) for r in _host(context, number).requests()]
    assert any(command in a for a in asked), f"{command!r} not in {asked}"


@then("every lab host was rebooted exactly once")
def rebooted_once(context: Any) -> None:
    for host in context.lab_hosts:
        assert len(reboots(host, context.lab_since)) == 1, (host.address, host.requests())
        assert host.boot_id() != context.boots[host.address], f"{host.address}: same boot"


@then('every lab host was asked "{command}" exactly once')
def asked_once(context: Any, command: str) -> None:
    for host in context.lab_hosts:
        asked = [" ".join([r["cmd"], *r["argv"]]) for r in host.requests()
                 if r["time"] >= context.lab_since]
        assert asked.count(command) == 1, (host.address, asked)


@then('every lab host booted version "{version}"')
def booted_version(context: Any, version: str) -> None:
    for host in context.lab_hosts:
        assert host.read_file("/var/lib/lab/version").strip() == version, host.address


# -- rolling operations --------------------------------------------------------

@when("we watch how many lab hosts are down")
def watch_down(context: Any) -> None:
    context.down_monitor = DownMonitor(context.lab_hosts)


@then('the {kind:w} of cluster "{cluster}" ends "{status}" within {seconds:d} seconds')
def operation_ends(context: Any, kind: str, cluster: str, status: str, seconds: int) -> None:
    def ended() -> bool:
        op = _get(context, f"/cluster/{cluster}/{kind}").json()
        return op["status"] != "in_process" and bool(op.get("finished_at"))
    _wait(context, ended, seconds, f"{kind} of {cluster} ended")
    assert context.response.json()["status"] == status, context.response.text


@then('every host of the {kind:w} of cluster "{cluster}" is "{state}"')
def every_host_state(context: Any, kind: str, cluster: str, state: str) -> None:
    op = _get(context, f"/cluster/{cluster}/{kind}").json()
    states = {a: h["state"] for a, h in op["hosts"].items()}
    assert states == {h.address: state for h in context.lab_hosts}, states


@then("never more than {count:d} lab hosts were down at once")
def never_over(context: Any, count: int) -> None:
    seen = context.down_monitor.stop()
    assert 1 <= seen <= count, f"{seen} hosts down at once"
