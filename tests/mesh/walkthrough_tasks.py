"""Run an aws-app-mesh-examples walkthrough as its README does, with traffic.

Its stacks go through our CloudFormation with the real aws CLI (as its ``deploy.sh``),
its ECS task definitions (registered by its ``app.yaml``) run with ``appmesh-local ecs
run-task`` in awsvpc mode, as its ECS services would start them: a network namespace
and an address per task, the walkthrough's ports, App Mesh's iptables rules, the
virtual service names in the task's hosts file. Stand-in programs play the images.
Requests come from this host to a task's address, as the walkthrough's load balancer
or bastion sent them, and the proxies' admin ports are read from inside the task.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.api.test_aws_cli import run_aws_in_process
from tests.cloudformation.test_walkthroughs import PREPARATIONS, WALKTHROUGHS, Run
from tests.ecs.test_examples import Task

HERE = Path(__file__).parent / "walkthroughs"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Walk:
    """One walkthrough in an account of its own, and the tasks it started."""

    def __init__(self, server, name: str, tmp: Path) -> None:
        (self.walkthrough,) = (w for w in WALKTHROUGHS if w.name == name)
        self.server, self.tmp = server, tmp
        self.run = Run(server, self.walkthrough)
        self.tasks: dict[str, Task] = {}

    @property
    def account(self) -> str:
        return self.run.account

    def deploy(self) -> None:
        """The README's preparations, then every stack of its ``deploy.sh``, in order."""
        for name in self.walkthrough.prepare:
            self.run.variables.update(PREPARATIONS[name](self.run))
        for step in self.walkthrough.steps:
            self.run.deploy(step)

    def aws(self, *args: str) -> subprocess.CompletedProcess:
        done = run_aws_in_process(self.server, self.account, *args)
        assert done.returncode == 0, done.stderr
        return done

    def start(self, family: str, **commands: str) -> Task:
        task = Task(self.server, self.account, family, self.tmp / family, **commands)
        self.tasks[family] = task
        return task

    def stop(self) -> dict[str, str]:
        return {family: task.stop() for family, task in self.tasks.items()}


def python(script: str, *args: str) -> str:
    """A container command running one of the stand-in programs of ``walkthroughs/``."""
    return " ".join(["exec", sys.executable, str(HERE / script), *args])


def admin(task: Task, path: str, method: str = "GET") -> str:
    """The task's proxy admin port (9901), from inside the task as its bastion did."""
    command = ["curl", "-s", "-X", method, f"http://127.0.0.1:9901{path}"]
    inside = ["ip", "netns", "exec", task.namespace, *command]
    return subprocess.run(inside, capture_output=True, text=True, timeout=10, check=True).stdout


def stats(task: Task, grep: str) -> dict[str, int]:
    """``curl -s .../stats | grep GREP``, as name -> value."""
    found = {}
    for line in admin(task, "/stats").splitlines():
        name, _, value = line.partition(": ")
        if grep in name and value.isdigit():
            found[name] = int(value)
    return found


def http(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, str]:
    """One request from this host (status, body); an HTTP error is a status, not a raise."""
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with NO_PROXY.open(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def until(check, timeout: float = 30.0, pause: float = 0.2):
    """``check()``'s first truthy value, or its last value after ``timeout`` (an
    ``OSError`` counts as a falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except OSError as error:
            value = error if time.monotonic() > deadline else None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(pause)


def spec_file(path: Path) -> str:
    """``file://...`` of a vendored spec, as the README's ``--cli-input-json`` names it."""
    json.loads(path.read_text())  # a broken copy fails here, not in the CLI
    return f"file://{path}"
