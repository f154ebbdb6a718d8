"""SDS gives a node only the secrets its own resources name; private keys stay in SDS.

Two nodes of one account, ``alice`` and ``bob``, serve STRICT TLS with their own ACM
private certificates. ``bob``'s proxy (correctly signed: it is bob) names alice's
secret in ``resource_names``, over REST xDS and over gRPC ADS, and must not get her
private key. ``mallory``, in another account's mesh, names alice's certificate ARN in
its own listener: App Mesh allowed no cross-account ACM references, so the control plane
exports nothing for it and logs why. No listener or cluster carries key material.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.conftest import Server, make_client, new_account
from tests.mesh.harness import wait_for
from tests.private_ca import create_root_ca, request_private
from tests.signing import xds_request

SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def node_arn(account: str, mesh: str, name: str) -> str:
    return f"arn:aws:appmesh:us-east-1:{account}:mesh/{mesh}/virtualNode/{name}"


def tls_node(appmesh: Any, mesh: str, name: str, certificate_arn: str) -> None:
    listener = {
        "portMapping": {"port": 8080, "protocol": "http"},
        "tls": {"mode": "STRICT", "certificate": {"acm": {"certificateArn": certificate_arn}}},
    }
    spec = {"listeners": [listener], "serviceDiscovery": {"dns": {"hostname": f"{name}.local"}}}
    appmesh.create_virtual_node(meshName=mesh, virtualNodeName=name, spec=spec)


@pytest.fixture(scope="module")
def vault(server: Server) -> dict[str, Any]:
    account, stranger = new_account(), new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    acm, pca = (make_client(server.endpoint, s, account) for s in ("acm", "acm-pca"))
    ca = create_root_ca(pca, "vault root")
    arns = {name: request_private(acm, ca, f"{name}.local") for name in ("alice", "bob")}
    appmesh.create_mesh(meshName="vault")
    for name, arn in arns.items():
        tls_node(appmesh, "vault", name, arn)
    theirs = make_client(server.endpoint, "appmesh", stranger)
    theirs.create_mesh(meshName="den")
    tls_node(theirs, "den", "mallory", arns["alice"])
    return {"account": account, "stranger": stranger, "arns": arns}


def discover(server: Server, arn: str, kind: str, names: list[str] | None = None) -> dict:
    document: dict[str, Any] = {"node": {"id": arn, "cluster": arn}}
    if names is not None:
        document["resource_names"] = names
    request = xds_request(f"{server.endpoint}/v3/discovery:{kind}", document)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def secret_names(response: dict) -> list[str]:
    return sorted(secret["name"] for secret in response.get("resources", []))


def test_rest_sds_serves_a_node_only_its_own_secret(server: Server, vault: dict) -> None:
    alice, bob = vault["arns"]["alice"], vault["arns"]["bob"]
    me = node_arn(vault["account"], "vault", "bob")
    own = wait_for(lambda: secret_names(discover(server, me, "secrets", [bob])) == [bob])
    assert own, "bob's own ACM secret was never delivered"
    mine = discover(server, me, "secrets", [bob])["resources"][0]
    assert "PRIVATE KEY" in mine["tls_certificate"]["private_key"]["inline_string"]
    assert secret_names(discover(server, me, "secrets", [alice])) == []
    assert secret_names(discover(server, me, "secrets", [alice, bob])) == [bob]
    assert secret_names(discover(server, me, "secrets")) == [bob]  # a wildcard request


def test_ads_serves_a_node_only_its_own_secret(server: Server, vault: dict) -> None:
    alice, bob = vault["arns"]["alice"], vault["arns"]["bob"]
    me = node_arn(vault["account"], "vault", "bob")
    wait_for(lambda: secret_names(discover(server, me, "secrets", [bob])) == [bob])
    assert ads_secret_names(server, vault["account"], me, [alice, bob]) == [bob]
    assert ads_secret_names(server, vault["account"], me, [alice]) == []


def ads_secret_names(server: Server, account: str, arn: str, names: list[str]) -> list[str]:
    claim = (
        f"AWS4-HMAC-SHA256 Credential={account}/20190125/us-east-1/appmesh/aws4_request, "
        f"SignedHeaders=host, Signature={'0' * 64}"
    )

    async def scenario() -> list[str]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=(("authorization", claim),))
            node = base_pb2.Node(id=arn, cluster=arn)
            request = discovery_pb2.DiscoveryRequest(
                node=node, type_url=SECRET, resource_names=names
            )
            await call.write(request)
            response = await asyncio.wait_for(call.read(), 10)
            call.cancel()
            found = []
            for resource in response.resources:
                secret = secret_pb2.Secret()
                resource.Unpack(secret)
                found.append(secret.name)
            return sorted(found)

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["listeners", "clusters"])
def test_no_private_key_in_listeners_or_clusters(server: Server, vault: dict, kind: str) -> None:
    me = node_arn(vault["account"], "vault", "alice")
    wait_for(lambda: discover(server, me, "secrets", [vault["arns"]["alice"]])["resources"])
    text = json.dumps(discover(server, me, kind))
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


def test_another_accounts_certificate_is_not_exported(server: Server, vault: dict) -> None:
    alice = vault["arns"]["alice"]
    mallory = node_arn(vault["stranger"], "den", "mallory")
    assert secret_names(discover(server, mallory, "secrets", [alice])) == []
    expected = f"ACM {alice}: not delivered to the proxies: it belongs to account"
    assert wait_for(lambda: expected in server.log())
    time.sleep(0.5)
    assert secret_names(discover(server, mallory, "secrets", [alice])) == []
