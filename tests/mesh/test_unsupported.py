"""What the sidecar cannot honour is refused loudly, never served downgraded.

A mesh asks for a TLS certificate from a local SDS agent (SPIRE) on a listener, and
for client-policy trust from that agent toward a backend, of sidecars started without
one (no ``APPMESH_SDS_SOCKET_PATH``): they NACK those listeners and clusters with
a reason (visible in ``/_appmesh/proxies`` and its log) and keeps the rest of the node's
config live. An HTTP/2 client (prior knowledge) is served, converted to HTTP/1.1 for an
``http`` backend.
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest

from envoy_bootstrap.envoy_types import CLUSTER, LISTENER
from tests.certificates import Authority
from tests.conftest import make_client, new_account
from tests.mesh import tls_helpers
from tests.mesh.harness import Mesh, get, wait_for
from tests.mesh.tls_helpers import create_nodes
from tests.signing import proxies_of

MESH = "refuse"
# TLS itself is served (tests/mesh/test_tls.py), and a local SDS agent's secrets when the
# sidecar has one (tests/proxy/test_proxy_sds_agent.py); these sidecars have none.
STRICT_TLS = {"mode": "STRICT", "certificate": {"sds": {"secretName": "spiffe://refuse/secure"}}}


HEALTH = {"protocol": "http", "path": "/", "healthyThreshold": 2, "unhealthyThreshold": 2,
          "timeoutMillis": 2000, "intervalMillis": 5000}  # fmt: skip


def host(name: str) -> str:
    return f"{name}.{MESH}.local"


def node_spec(port: int, name: str, tls: dict | None = None, check: dict | None = None) -> dict:
    return tls_helpers.node_spec(port, host(name), tls, check)


@pytest.fixture(scope="module")
def refused(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, MESH, tmp_path_factory.mktemp(MESH))
    try:
        appmesh.create_mesh(meshName=MESH)
        ports = {name: mesh.app(name) for name in ("blue", "rpc", "secure", "front")}
        folder = tmp_path_factory.mktemp("refuse-certs")
        rpc_files = Authority(folder).issue("rpc", [host("rpc")]).file_certificate()
        rpc_tls = {"mode": "STRICT", "certificate": rpc_files}
        trust = {"trust": {"sds": {"secretName": "spiffe://refuse/ca"}}}
        specs = {
            "blue": node_spec(ports["blue"], "blue"),
            "rpc": node_spec(ports["rpc"], "rpc", tls=rpc_tls, check=HEALTH),
            "secure": node_spec(ports["secure"], "secure", tls=STRICT_TLS),
        }
        create_nodes(appmesh, MESH, specs, host)
        front = node_spec(ports["front"], "front")
        front["backends"] = [
            {"virtualService": {"virtualServiceName": host(name)}} for name in specs
        ]
        policy = {"tls": {"enforce": True, "validation": trust}}
        front["backends"][1]["virtualService"]["clientPolicy"] = policy  # towards rpc
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="front", spec=front)
        proxies = {name: mesh.proxy(name) for name in ("front", "secure", "blue")}
        yield {"appmesh": appmesh, "mesh": mesh, "proxies": proxies, "specs": specs, **ports}
    finally:
        mesh.close()


def rejections(server, node: str, account: str) -> dict:
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/{MESH}/virtualNode/{node}"
    proxies = proxies_of(server.endpoint, account)
    mine = [p for p in proxies if p["nodeId"] == arn]
    assert mine, f"no proxy registered for {arn}"
    return mine[0]["rejected"]


def test_clusters_it_cannot_serve_are_nacked_with_the_reason(server, refused):
    account = refused["mesh"].account
    found = wait_for(lambda: rejections(server, "front", account).get(CLUSTER))
    assert found, "the cluster trusting a local SDS agent was accepted"
    assert "not the bootstrap's local SDS agent" in found["message"]
    assert "rpc" in found["message"]
    log = (refused["mesh"].tmp / "proxy-front.log").read_text()
    assert "refusing part of clusters" in log and "local SDS agent" in log


def test_the_rest_of_the_node_stays_live(refused):
    front = refused["proxies"]["front"]
    status, _, body = get(front.egress, "/", f"blue.{MESH}.local")
    assert status == 200 and "blue" in body
    clusters = front.admin_get("/clusters")
    assert f"_{MESH}_blue_http_" in clusters and f"_{MESH}_rpc_" not in clusters


def test_a_tls_listener_it_cannot_serve_is_refused_not_served_in_plaintext(server, refused):
    account = refused["mesh"].account
    found = wait_for(lambda: rejections(server, "secure", account).get(LISTENER))
    assert found and "not the bootstrap's local SDS agent" in found["message"]
    secure = refused["proxies"]["secure"]
    with pytest.raises(OSError):
        get(secure.ingress, "/", f"secure.{MESH}.local", timeout=3)


def test_an_http2_client_is_served_by_an_http_backend(refused):
    """Prior-knowledge HTTP/2 on the egress listener (codec AUTO), HTTP/1.1 to blue."""
    front = refused["proxies"]["front"]
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    client.initiate_connection()
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"),
               (":authority", f"blue.{MESH}.local")]  # fmt: skip
    client.send_headers(1, headers, end_stream=True)
    status, body, ended = "", b"", False
    with socket.create_connection(("127.0.0.1", front.egress), timeout=5) as conn:
        conn.sendall(client.data_to_send())
        while not ended:
            data = conn.recv(65536)
            assert data, "closed before the response ended"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            conn.sendall(client.data_to_send())
    assert status == "200" and b"blue" in body


def test_fixing_the_mesh_clears_the_rejection_and_serves(server, refused):
    account, appmesh = refused["mesh"].account, refused["appmesh"]
    appmesh.update_virtual_node(
        meshName=MESH,
        virtualNodeName="secure",
        spec=node_spec(refused["secure"], "secure"),
    )
    assert wait_for(lambda: LISTENER not in rejections(server, "secure", account))
    secure = refused["proxies"]["secure"]
    status, _, body = wait_for(
        lambda: (r := get(secure.ingress, "/", f"secure.{MESH}.local"))[0] == 200 and r
    )
    assert status == 200 and "secure" in body
