"""Every task definition a deployed walkthrough registered is one ``ecs run-task`` takes.

``tests/cloudformation/test_walkthroughs.py`` calls ``check_task_definitions`` after
each stack of a walkthrough is deployed: each family's latest revision with a proxy
(a ``proxyConfiguration``, or a virtual gateway's Envoy container) is read back by
family, as ``run-task --task-definition FAMILY`` reads it, and a runner is made for it
with a stand-in command for every app container, so any field it could not honour would
be refused here by name.
"""

from __future__ import annotations

import os
from pathlib import Path

from appmesh_api.ecs.commands import fetch_registered
from appmesh_api.ecs.placement import Explicit, is_xray_daemon
from appmesh_api.ecs.runner import TaskRunner
from appmesh_api.ecs.taskdef import TaskDefinition


def check_task_definitions(endpoint: str, account: str, ecs) -> list[str]:
    """The families checked (a refusal raises ``TaskDefinitionError``)."""
    checked = []
    pages = ecs.get_paginator("list_task_definition_families")
    families = [f for page in pages.paginate(status="ACTIVE") for f in page["families"]]
    before = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=account, AWS_SECRET_ACCESS_KEY="local")
    try:
        for family in families:
            task = fetch_registered(family, endpoint)
            if task.proxy_container:
                TaskRunner(task, stand_ins(task), Explicit(task, endpoint), print, Path("."))
                checked.append(family)
    finally:
        for key, value in before.items():
            os.environ.pop(key, None) if value is None else os.environ.update({key: value})
    return checked


def stand_ins(task: TaskDefinition) -> dict[str, str]:
    """A command for each container an image ran (the proxy and X-Ray daemon need none)."""
    return {
        c.name: "sleep infinity"
        for c in task.containers
        if c.name != task.proxy_container and not is_xray_daemon(c)
    }
