"""Every committed write moves its mesh's version forward, and waiters wake at once."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from tests.api.helpers import http_node_spec


def mesh_version(server, account: str, mesh: str, after: int | None = None, wait: float = 0):
    query = f"?meshOwner={account}"
    if after is not None:
        query += f"&after={after}&wait={wait}"
    url = f"{server.endpoint}/_appmesh/meshes/{mesh}/version{query}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())["version"]


def test_each_write_bumps_the_mesh_version_and_failed_writes_do_not(server, appmesh, account):
    appmesh.create_mesh(meshName="fed")
    first = mesh_version(server, account, "fed")
    appmesh.create_virtual_node(meshName="fed", virtualNodeName="a", spec=http_node_spec())
    second = mesh_version(server, account, "fed")
    assert second > first
    with pytest.raises(appmesh.exceptions.ConflictException):
        appmesh.create_virtual_node(meshName="fed", virtualNodeName="a", spec=http_node_spec())
    assert mesh_version(server, account, "fed") == second


def test_a_waiter_wakes_when_its_mesh_changes(server, appmesh, account):
    appmesh.create_mesh(meshName="watched")
    appmesh.create_mesh(meshName="other")
    seen = mesh_version(server, account, "watched")
    woke: dict[str, float] = {}

    def wait() -> None:
        woke["version"] = mesh_version(server, account, "watched", after=seen, wait=20)
        woke["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    appmesh.create_virtual_node(meshName="other", virtualNodeName="n", spec=http_node_spec())
    time.sleep(0.3)
    assert waiter.is_alive(), "a change to another mesh must not wake this waiter"
    changed_at = time.monotonic()
    appmesh.create_virtual_node(meshName="watched", virtualNodeName="n", spec=http_node_spec())
    waiter.join(timeout=20)
    assert woke["version"] > seen
    assert woke["at"] >= changed_at


def test_a_waiter_times_out_with_the_same_version(server, appmesh, account):
    appmesh.create_mesh(meshName="quiet")
    seen = mesh_version(server, account, "quiet")
    assert mesh_version(server, account, "quiet", after=seen, wait=0.2) == seen
