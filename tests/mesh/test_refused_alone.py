"""A cluster that does not load is refused on its own; the sidecar goes LIVE without it.

The front trusts a CA file for its ``green`` backend that is not on its machine (a
secret mount that never happened). Envoy fails that one cluster, NACKs the update with
the reason and starts with the rest; so does the sidecar: ``blue`` is served, ``green``
answers no cluster, and the reason is in ``/_appmesh/proxies``.
"""

from __future__ import annotations

import pytest

from envoy_bootstrap.envoy_types import CLUSTER
from tests.conftest import make_client, new_account
from tests.mesh import tls_helpers
from tests.mesh.harness import Mesh, get, wait_for
from tests.signing import proxies_of

MESH = "alone"


def host(name: str) -> str:
    return f"{name}.{MESH}.local"


@pytest.fixture(scope="module")
def front(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, MESH, tmp_path_factory.mktemp(MESH))
    try:
        appmesh.create_mesh(meshName=MESH)
        ports = {name: mesh.app(name) for name in ("blue", "green", "front")}
        specs = {name: tls_helpers.node_spec(ports[name], host(name)) for name in ("blue", "green")}
        tls_helpers.create_nodes(appmesh, MESH, specs, host)
        spec = tls_helpers.node_spec(ports["front"], host("front"))
        missing = str(tmp_path_factory.mktemp("no-mount") / "ca_cert.pem")
        trust = {"trust": {"file": {"certificateChain": missing}}}
        spec["backends"] = [
            {"virtualService": {"virtualServiceName": host("blue")}},
            {"virtualService": {"virtualServiceName": host("green"), "clientPolicy": {
                "tls": {"enforce": True, "validation": trust}}}},
        ]  # fmt: skip
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="front", spec=spec)
        mesh.proxy("blue")
        yield mesh, mesh.proxy("front"), missing  # LIVE, or the harness raises
    finally:
        mesh.close()


def test_the_sidecar_goes_live_and_serves_what_loads(front) -> None:
    _, proxy, _ = front
    status, _, body = get(proxy.egress, "/", host("blue"))
    assert status == 200 and "blue" in body
    clusters = proxy.admin_get("/clusters")
    assert f"_{MESH}_blue_http_" in clusters and f"_{MESH}_green_" not in clusters


def test_the_cluster_that_does_not_load_is_nacked_with_its_reason(server, front) -> None:
    mesh, _, missing = front
    arn = f"arn:aws:appmesh:us-east-1:{mesh.account}:mesh/{MESH}/virtualNode/front"

    def rejected():
        found = [p for p in proxies_of(server.endpoint, mesh.account) if p["nodeId"] == arn]
        return found and found[0]["rejected"].get(CLUSTER)

    reason = wait_for(rejected)
    assert reason and missing in reason["message"] and "green" in reason["message"], reason
