"""gRPC over mutual TLS in a real mesh: HTTP/2 negotiated by ALPN inside the TLS hop.

``vault`` has a STRICT ``grpc`` listener that requires a client certificate naming
``caller``; ``caller`` reaches it through its sidecar with a client policy (trust, SAN,
its own certificate). The sidecar-to-sidecar hop is TLS with ALPN ``h2``; the apps on
either end speak plaintext h2c to their own sidecar, as in App Mesh.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.certificates import Authority
from tests.conftest import make_client, new_account
from tests.mesh.harness import Mesh

MESH = "grpctls"
GRPC_APP = str(Path(__file__).with_name("grpc_app.py"))
METHOD = "/color.ColorService/GetColor"


def host(name: str) -> str:
    return f"{name}.{MESH}.local"


@pytest.fixture(scope="module")
def secured(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    folder = tmp_path_factory.mktemp(MESH)
    ca = Authority(folder)
    files = {name: ca.issue(name, [host(name)]).file_certificate() for name in ("vault", "caller")}
    mesh = Mesh(server.endpoint, account, MESH, folder)
    trust = {"trust": {"file": {"certificateChain": str(ca.pem)}}}
    try:
        appmesh.create_mesh(meshName=MESH)
        vault_port = mesh.app("vault", script=GRPC_APP)
        tls = {
            "mode": "STRICT",
            "certificate": files["vault"],
            "validation": {
                **trust,
                "subjectAlternativeNames": {"match": {"exact": [host("caller")]}},
            },
        }
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="vault", spec={
            "listeners": [{"portMapping": {"port": vault_port, "protocol": "grpc"}, "tls": tls}],
            "serviceDiscovery": {"dns": {"hostname": host("vault")}},
        })  # fmt: skip
        appmesh.create_virtual_service(
            meshName=MESH,
            virtualServiceName=host("vault"),
            spec={"provider": {"virtualNode": {"virtualNodeName": "vault"}}},
        )
        policy = {"tls": {"enforce": True, "certificate": files["caller"],
                          "validation": {**trust, "subjectAlternativeNames": {
                              "match": {"exact": [host("vault")]}}}}}  # fmt: skip
        caller_port = mesh.app("caller", script=GRPC_APP)
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="caller", spec={
            "listeners": [{"portMapping": {"port": caller_port, "protocol": "grpc"}}],
            "serviceDiscovery": {"dns": {"hostname": host("caller")}},
            "backends": [{"virtualService": {"virtualServiceName": host("vault"),
                                             "clientPolicy": policy}}],
        })  # fmt: skip
        proxies = {name: mesh.proxy(name) for name in ("vault", "caller")}
        yield proxies
    finally:
        mesh.close()


def call(port: int, authority: str) -> bytes:
    options = [("grpc.default_authority", authority)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        reply: bytes = channel.unary_unary(METHOD)(b"", timeout=10)
        return reply


def test_grpc_crosses_the_mutual_tls_hop_as_http2(secured):
    vault, caller = secured["vault"], secured["caller"]
    assert call(caller.egress, host("vault")) == b"vault"
    stats = vault.admin_get("/stats").splitlines()
    handshakes = [s for s in stats if ".ssl.handshake: " in s and not s.endswith(": 0")]
    assert handshakes, "no TLS handshake on vault's listener"
    assert vault.stat("http.ingress.downstream_rq_http2_total") >= 1  # ALPN picked h2


def test_a_plaintext_grpc_client_is_refused_by_strict(secured):
    with pytest.raises(grpc.RpcError) as raised:
        call(secured["vault"].ingress, host("vault"))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
