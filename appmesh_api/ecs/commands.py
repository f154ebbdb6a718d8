"""``appmesh-local ecs run-task``: one task definition, run here."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from appmesh_api.ecs import tasks
from appmesh_api.ecs.logs import LogShipper
from appmesh_api.ecs.network import DEFAULT_SUBNET
from appmesh_api.ecs.placement import placement
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


def run_task(
    definition: str,
    containers: list[str],
    endpoint: str,
    logs: str | None,
    network_mode: str = "auto",
    subnet: str = DEFAULT_SUBNET,
) -> int:
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
        where = placement(network_mode, task, endpoint, subnet, say)
        runner = TaskRunner(task, commands, where, say, log_dir)
    except TaskDefinitionError as exc:
        print(f"appmesh-local ecs: {exc}", file=sys.stderr)
        return 2
    record = tasks.new_task(task.family, where.description)
    runner.on_network = lambda network: tasks.describe_network(record, network)
    runner.logs = LogShipper(endpoint, record.task_id, task.containers)
    print(
        f"running task {task.family} (id {record.task_id}): {len(task.containers)} containers; "
        f"stop it with Ctrl-C or appmesh-local ecs stop-task --task {record.task_id}",
        flush=True,
    )
    try:
        return runner.run()
    finally:
        tasks.forget(record)


def stop_task(reference: str) -> int:
    """``ecs stop-task --task ID|FAMILY``: stop it as Ctrl-C would, and wait."""
    found = tasks.find(reference)
    if not found:
        print(
            f"appmesh-local ecs: no running task {reference!r} on this machine "
            "(appmesh-local ecs list-tasks shows them)",
            file=sys.stderr,
        )
        return 1
    code = 0
    for task in found:
        print(f"stopping task {task.task_id} ({task.family}) ...", flush=True)
        if tasks.stop(task):
            print(f"stopped task {task.task_id}")
        else:
            print(f"task {task.task_id} (pid {task.pid}) is still stopping", file=sys.stderr)
            code = 1
    return code


def list_tasks() -> int:
    for task in tasks.running():
        print(f"{task.task_id}  {task.family}  pid {task.pid}  {task.network}")
    return 0


def say(line: str) -> None:
    print(line, flush=True)
