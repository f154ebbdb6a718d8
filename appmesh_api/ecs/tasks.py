"""Running tasks on this machine, so ``stop-task`` and ``list-tasks`` can find them.

Each ``run-task`` writes one small file (task id, family, pid, network) under
``~/.appmesh-local/ecs-tasks`` and removes it when the task has stopped. A file whose
process is gone (``kill -9``) is not a running task, and is cleared when read.
Task ids are 32 hex digits, as ECS's are.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

FOLDER = Path.home() / ".appmesh-local" / "ecs-tasks"


@dataclass(frozen=True)
class RunningTask:
    task_id: str
    family: str
    pid: int
    network: str

    @property
    def path(self) -> Path:
        return FOLDER / f"{self.task_id}.json"


def new_task(family: str, network: str) -> RunningTask:
    task = RunningTask(uuid.uuid4().hex, family, os.getpid(), network)
    FOLDER.mkdir(parents=True, exist_ok=True)
    task.path.write_text(json.dumps(asdict(task)))
    return task


def describe_network(task: RunningTask, network: str) -> RunningTask:
    """The task's network once its placement is made (awsvpc: its address)."""
    updated = RunningTask(task.task_id, task.family, task.pid, network)
    updated.path.write_text(json.dumps(asdict(updated)))
    return updated


def forget(task: RunningTask) -> None:
    task.path.unlink(missing_ok=True)


def running() -> list[RunningTask]:
    found = []
    for path in sorted(FOLDER.glob("*.json")):
        try:
            task = RunningTask(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if process_alive(task.pid):
            found.append(task)
        else:
            path.unlink(missing_ok=True)
    return found


def find(reference: str) -> list[RunningTask]:
    """Tasks a user means by ``reference``: a task id (or ARN ending in one) or a family."""
    wanted = reference.rsplit("/", 1)[-1]
    return [t for t in running() if wanted in (t.task_id, t.family)]


def stop(task: RunningTask, timeout: float = 60.0) -> bool:
    """SIGTERM, as ECS's StopTask; True once the runner has stopped every container."""
    try:
        os.kill(task.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(task.pid):
            return True
        time.sleep(0.1)
    return False


def process_alive(pid: int) -> bool:
    """Running, not a zombie (an exited runner its parent has not reaped yet is done)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
