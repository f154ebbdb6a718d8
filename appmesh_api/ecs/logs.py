"""The ``awslogs`` log driver: container output to CloudWatch Logs on the endpoint.

On ECS, a container with ``logConfiguration`` ``awslogs`` had its output sent to the
log group ``awslogs-group``, in a stream named ``PREFIX/CONTAINER/TASK_ID``; a group that
did not exist stopped the task before its containers started, unless
``awslogs-create-group`` was ``true``. Here each container's output still goes to its
file in the task's log folder, and ``LogShipper`` sends the lines written there to the
same group and stream through the endpoint's CloudWatch Logs, about once a second and
once more when the task stops.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appmesh_api.ecs.fields import TaskDefinitionError
from appmesh_api.ecs.taskdef import Container

INTERVAL = 1.0
BATCH = 1000  # lines per PutLogEvents (the API takes up to 10,000)


@dataclass
class _Stream:
    client: Any
    group: str
    name: str
    path: Path
    offset: int = 0
    pending: bytes = b""


class LogShipper:
    def __init__(self, endpoint: str, task_id: str, containers: list[Container]) -> None:
        self.endpoint, self.task_id = endpoint, task_id
        self.containers = [c for c in containers if c.log is not None]
        self.streams: list[_Stream] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stream_name(self, container: Container) -> str:
        """``PREFIX/CONTAINER/TASK_ID`` as on ECS. Without a prefix ECS named the stream
        after the Docker container id; here it is ``CONTAINER/TASK_ID`` (UNCONFIRMED)."""
        assert container.log is not None
        prefix = container.log.get("awslogs-stream-prefix")
        return "/".join([*([prefix] if prefix else []), container.name, self.task_id])

    def open(self, log_dir: Path) -> list[str]:
        """Check (or create) the groups and make the streams; what to say about them."""
        from appmesh_api.views.endpoint import client

        said = []
        for container in self.containers:
            assert container.log is not None
            options = container.log
            logs = client("logs", self.endpoint, options.get("awslogs-region"))
            group = options["awslogs-group"]
            if not _group_exists(logs, group):
                if options.get("awslogs-create-group", "").lower() != "true":
                    raise TaskDefinitionError(
                        f"container {container.name}: the awslogs log group {group} does not "
                        "exist (create it, or set awslogs-create-group to true)"
                    )
                logs.create_log_group(logGroupName=group)
            name = self.stream_name(container)
            logs.create_log_stream(logGroupName=group, logStreamName=name)
            self.streams.append(_Stream(logs, group, name, log_dir / f"{container.name}.log"))
            said.append(f"{container.name} logs to CloudWatch Logs {group} {name}")
        if self.streams:
            self._thread = threading.Thread(target=self._loop, name="awslogs", daemon=True)
            self._thread.start()
        return said

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.ship()

    def ship(self) -> None:
        for stream in self.streams:
            try:
                _ship(stream)
            except Exception:  # the endpoint went away: the file keeps every line
                continue

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.ship()


def _group_exists(logs: Any, group: str) -> bool:
    found = logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", [])
    return any(g["logGroupName"] == group for g in found)


def _ship(stream: _Stream) -> None:
    try:
        with stream.path.open("rb") as file:
            file.seek(stream.offset)
            data = file.read()
    except FileNotFoundError:
        return
    stream.offset += len(data)
    *lines, stream.pending = (stream.pending + data).split(b"\n")
    now = int(time.time() * 1000)
    events = [
        {"timestamp": now, "message": line.decode("utf-8", "replace")} for line in lines if line
    ]
    for start in range(0, len(events), BATCH):
        stream.client.put_log_events(
            logGroupName=stream.group,
            logStreamName=stream.name,
            logEvents=events[start : start + BATCH],
        )
