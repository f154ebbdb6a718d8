"""What a task definition asks and cannot be done here is refused, naming the field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from appmesh_api.ecs.taskdef import TaskDefinitionError, parse
from tests.conftest import new_account
from tests.ecs.test_run_task import task_definition

BASE = task_definition("fields", "123456789012", "x", 8080,
                       {"admin": 9901, "ingress": 15000, "egress": 15001})  # fmt: skip


def changed(task: dict | None = None, **app: object) -> dict:
    document = copy.deepcopy(BASE)
    document.update(task or {})
    document["containerDefinitions"][0].update(app)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            changed(secrets=[{"name": "TOKEN", "valueFrom": "arn:aws:ssm:::parameter/t"}]),
            "container app: secrets is not supported here (put the values in environment",
        ),
        (
            changed({"volumes": [{"name": "certs", "host": {"sourcePath": "/certs"}}]}),
            "volumes is not supported here (no volumes",
        ),
        (
            changed(mountPoints=[{"sourceVolume": "certs", "containerPath": "/certs"}]),
            "container app: mountPoints is not supported here",
        ),
        (
            changed(logConfiguration={"logDriver": "fluentd", "options": {}}),
            "container app: logDriver fluentd is not supported here (awslogs is",
        ),
        (
            changed(logConfiguration={"logDriver": "awslogs", "options": {"awslogs-x": "1"}}),
            "awslogs option awslogs-x is not supported here",
        ),
        (
            changed(portMappings=[{"containerPort": 8080, "hostPort": 80}]),
            "hostPort 80 differs from containerPort 8080",
        ),
        (changed({"networkMode": "bridge"}), "networkMode bridge is not supported here"),
        (
            changed(ulimits=[{"name": "nofiles", "softLimit": 1, "hardLimit": 1}]),
            "ulimit 'nofiles' is not a limit this system has",
        ),
        (changed(privileged=True), "container app: privileged is not supported here"),
        (changed({"pidMode": "task"}), "pidMode is not supported here"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(document, message):
    with pytest.raises(TaskDefinitionError, match=message.replace("(", r"\(")):
        parse(document, "task.json")


def test_what_has_no_meaning_here_is_said_not_dropped():
    document = changed({"cpu": "256", "requiresCompatibilities": ["FARGATE"]}, cpu=32)
    said = parse(document, "task.json").not_applied
    assert "task cpu 256: not enforced (the containers are processes of this machine)" in said
    assert "requiresCompatibilities FARGATE: the task runs on this machine" in said
    assert "container app: cpu 32: not enforced" in said
    assert "container app: memory 128: not enforced" in said


def test_empty_values_ask_for_nothing():
    """DescribeTaskDefinition's output carries empty lists for what was not set."""
    document = changed({"volumes": [], "placementConstraints": []}, mountPoints=[], cpu=0)
    assert parse(document, "task.json").not_applied == [
        "container app: memory 128: not enforced",
        "container envoy: memory 128: not enforced",
    ]


def test_a_missing_awslogs_group_stops_the_task_before_its_containers(server, tmp_path):
    """As the ECS agent did, unless awslogs-create-group is true."""
    account = new_account()
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": "nowhere"}}
    path = tmp_path / "task.json"
    path.write_text(json.dumps(changed(logConfiguration=logs)))
    env = {"AWS_ACCESS_KEY_ID": account, "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}  # fmt: skip
    result = subprocess.run(
        [
            sys.executable, "-m", "appmesh_api.cli", "ecs", "run-task", "--task-definition",
            str(path), "--container", "app=sleep 30", "--network-mode", "explicit",
            "--endpoint", server.endpoint,
        ],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the awslogs log group nowhere does not exist" in result.stdout
    assert "started" not in result.stdout
