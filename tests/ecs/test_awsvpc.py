"""awsvpc mode, as root: two tasks, each a network namespace with App Mesh's iptables rules.

Both tasks use the same ports (app 9080, proxy 15000/15001, admin 9901), as two awsvpc
tasks could on ECS. The gateway app has no proxy settings: it calls
``http://teller.ecs.local:9080/``, the name resolves through the task's hosts file, and
iptables hands the connection to its proxy, which routes it to the teller proxy's
registered address on the bridge. This test reaches the gateway app's port from the
host, through the gateway proxy's ingress (the AppPorts rule).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from appmesh_api.ecs.network import NETNS_RUN, missing_tools
from tests.conftest import make_client, new_account
from tests.ecs.test_run_task import APP, MESH, run_task, task_definition

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"awsvpc mode needs {', '.join(missing_tools())}"
)
APP_PORT = 9080
PORTS = {"ingress": 15000, "egress": 15001, "admin": 9901}


def awsvpc_definition(family: str, account: str) -> dict:
    definition = task_definition(family, account, family, APP_PORT, PORTS)
    properties = definition["proxyConfiguration"]["properties"]
    # uid 1337 may not be able to run this machine's Python (a pyenv under /root): the
    # proxy then runs as root in group 1337, and the rules exempt that group too.
    properties.append({"name": "IgnoredGID", "value": "1337"})
    return definition


def build_mesh(appmesh) -> None:
    appmesh.create_mesh(meshName=MESH)
    for name, backends in (("teller", []), ("gateway", ["teller.ecs.local"])):
        appmesh.create_virtual_node(
            meshName=MESH,
            virtualNodeName=name,
            spec={
                "listeners": [{"portMapping": {"port": APP_PORT, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": f"{name}.ecs.local"}},
                "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
            },
        )
        if name == "teller":
            appmesh.create_virtual_service(
                meshName=MESH,
                virtualServiceName="teller.ecs.local",
                spec={"provider": {"virtualNode": {"virtualNodeName": "teller"}}},
            )


def task_address(task: subprocess.Popen, lines: list[str]) -> tuple[str, str]:
    """(namespace, address) from the runner's ``network:`` line."""
    pattern = re.compile(r"namespace (\S+), ([\d.]+)\)")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = task.stdout.readline()
        if not line:
            break
        lines.append(line)
        if found := pattern.search(line):
            return found.group(1), found.group(2)
    raise AssertionError("no network line:\n" + "".join(lines))


def cli(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "appmesh_api.cli", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def get_color(url: str, timeout: float = 45.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return json.loads(reply.read())
        except OSError:
            time.sleep(0.3)
    return None


def test_two_awsvpc_tasks_on_the_same_ports_talk_through_iptables(server, tmp_path):
    account = new_account()
    build_mesh(make_client(server.endpoint, "appmesh", account))
    commands = {
        "teller": f"{' '.join(APP)} teller blue {APP_PORT}",
        "gateway": f"{' '.join(APP)} gateway {APP_PORT} http://teller.ecs.local:{APP_PORT}/",
    }
    tasks: list[subprocess.Popen] = []
    lines: dict[str, list[str]] = {"teller": [], "gateway": []}
    places = {}
    try:
        for name in ("teller", "gateway"):
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(awsvpc_definition(name, account)))
            mode = ("--network-mode", "awsvpc")
            task = run_task(server, account, path, commands[name], tmp_path / name, mode)
            tasks.append(task)
            places[name] = task_address(task, lines[name])
        assert places["teller"][1] != places["gateway"][1]
        answer = get_color(f"http://{places['gateway'][1]}:{APP_PORT}/color")
        assert answer and answer["color"] == "blue", answer
        # StopTask's way for the gateway, Ctrl-C for the teller: both stop in ECS's order.
        task_id = re.search(r"\(id ([0-9a-f]{32})\)", "".join(lines["gateway"])).group(1)
        listed = cli("ecs", "list-tasks").stdout
        assert task_id in listed and places["gateway"][1] in listed, listed
        stopped = cli("ecs", "stop-task", "--task", task_id)
        assert stopped.returncode == 0 and f"stopped task {task_id}" in stopped.stdout
    finally:
        for task in tasks:
            if task.poll() is None:
                task.send_signal(signal.SIGINT)
        outputs = [
            "".join(lines[n]) + t.communicate(timeout=60)[0]
            for n, t in zip(lines, tasks, strict=True)
        ]
    for output in outputs:
        assert output.index("envoy is HEALTHY") < output.index("started app"), output
        assert output.index("stopped app") < output.index("stopped envoy"), output
    for namespace, _ in places.values():  # each task gave its namespace back
        assert not (NETNS_RUN / namespace).exists()


def test_a_namespace_that_cannot_be_wired_is_given_back_not_deadlocked(monkeypatch) -> None:
    """``open`` holds the state lock when wiring fails; giving the address back must not
    take the lock a second time (flock on a new descriptor waits for itself forever)."""
    from appmesh_api.ecs import network

    def broken(*_args: object) -> None:
        raise network.NetworkError("no veth today")

    monkeypatch.setattr(network, "_plug", broken)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            network.TaskNetwork.open("deadlock-check")
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(60)  # a hang detector, not a speed bound
    assert not worker.is_alive(), "TaskNetwork.open never returned: it waits on its own lock"
    assert len(outcome) == 1 and isinstance(outcome[0], network.NetworkError)
    assert not (network.NETNS_RUN / "ecs-2-deadlock-check").exists()
