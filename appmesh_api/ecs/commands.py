"""``appmesh-local ecs run-task``: one task definition, run here."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from appmesh_api.ecs.runner import TaskRunner
from appmesh_api.ecs.taskdef import TaskDefinition, TaskDefinitionError, load_file, parse


def fetch_registered(family: str, endpoint: str) -> TaskDefinition:
    """A task definition registered through the ECS API on the endpoint (family[:rev])."""
    from appmesh_api.views.endpoint import UNREACHABLE, client, unreachable

    ecs = client("ecs", endpoint)
    try:
        answer = ecs.describe_task_definition(taskDefinition=family)
    except UNREACHABLE as exc:
        raise TaskDefinitionError(unreachable(endpoint)) from exc
    except Exception as exc:  # botocore's ClientError: say what ECS said
        raise TaskDefinitionError(f"task definition {family}: {exc}") from exc
    return parse(answer, family)


def run_task(definition: str, containers: list[str], endpoint: str, logs: str | None) -> int:
    commands = {}
    for item in containers:
        name, sep, command = item.partition("=")
        if not sep or not name:
            print(
                f"appmesh-local ecs: --container takes NAME='COMMAND', not {item!r}",
                file=sys.stderr,
            )
            return 2
        commands[name] = command
    try:
        if Path(definition).exists():
            task = load_file(definition)
        else:
            task = fetch_registered(definition, endpoint)
        log_dir = Path(logs or tempfile.mkdtemp(prefix=f"ecs-{task.family}-"))
        runner = TaskRunner(task, commands, endpoint, lambda s: print(s, flush=True), log_dir)
    except TaskDefinitionError as exc:
        print(f"appmesh-local ecs: {exc}", file=sys.stderr)
        return 2
    mode = "explicit mode (http_proxy to the egress port; no iptables)"
    print(f"running task {task.family}: {len(task.containers)} containers, {mode}", flush=True)
    return runner.run()
