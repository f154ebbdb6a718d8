"""xDS serves a node's config only to its own account, as App Mesh's signed stream did.

An attacker on the same host knows (or guesses) a node's ARN. Unsigned, or signed by
another account, it must get neither listeners, clusters nor secrets, must not register
an ingress address that other nodes would route to, and must not take up the node's
50-proxy quota. ``/_appmesh/proxies`` shows only the caller's own proxies.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.api.helpers import build_mesh
from tests.conftest import Server, make_client, new_account, start_server
from tests.signing import proxies_of, signed_headers, xds_request

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"


@pytest.fixture(scope="module")
def victim(server: Server) -> dict[str, str]:
    account = new_account()
    build_mesh(make_client(server.endpoint, "appmesh", account), "prey")
    return {
        "account": account,
        "arn": f"arn:aws:appmesh:us-east-1:{account}:mesh/prey/virtualNode/blue",
    }


def post(server: Server, kind: str, document: dict, account: str | None) -> tuple[int, dict]:
    url = f"{server.endpoint}/v3/discovery:{kind}"
    if account is None:
        body = json.dumps(document).encode()
        request = urllib.request.Request(url, data=body, method="POST")
    else:
        request = xds_request(url, document, account)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize("kind", ["listeners", "clusters", "secrets", "endpoints", "routes"])
def test_an_unsigned_request_naming_a_node_gets_no_config(
    server: Server, victim: dict, kind: str
) -> None:
    status, body = post(server, kind, {"node": {"id": victim["arn"]}}, None)
    assert status == 403
    assert body["code"] == 7  # PERMISSION_DENIED
    assert "resources" not in body


@pytest.mark.parametrize("kind", ["listeners", "clusters", "secrets"])
def test_another_account_naming_a_node_gets_no_config(
    server: Server, victim: dict, kind: str
) -> None:
    status, body = post(server, kind, {"node": {"id": victim["arn"]}}, new_account())
    assert (status, body["code"]) == (403, 7)
    assert "resources" not in body


def test_a_stranger_cannot_register_an_ingress_address_or_fill_the_proxy_quota(
    server: Server, victim: dict
) -> None:
    stranger = new_account()
    for index in range(60):  # more than App Mesh's 50 connected Envoys per node
        node = {
            "id": victim["arn"],
            "metadata": {"appmesh_local.ingress_address": f"10.6.6.{index}:15000"},
        }
        status, _ = post(server, "clusters", {"node": node}, stranger)
        assert status == 403
    assert proxies_of(server.endpoint, victim["account"]) == []
    status, own = post(server, "listeners", {"node": {"id": victim["arn"]}}, victim["account"])
    assert status == 200 and own["resources"]  # the real proxy still gets in


def test_proxies_are_listed_only_to_their_own_account(server: Server, victim: dict) -> None:
    node = {"id": victim["arn"], "metadata": {"appmesh_local.ingress_address": "127.0.0.1:1"}}
    assert post(server, "listeners", {"node": node}, victim["account"])[0] == 200
    assert {p["nodeId"] for p in proxies_of(server.endpoint, victim["account"])} == {victim["arn"]}
    assert proxies_of(server.endpoint, new_account()) == []
    with urllib.request.urlopen(f"{server.endpoint}/_appmesh/proxies", timeout=5) as reply:
        unsigned = json.loads(reply.read())["proxies"]
    assert all(p["meshOwner"] != victim["account"] for p in unsigned)


def _ads(server: Server, arn: str, metadata: tuple) -> grpc.StatusCode | str:
    async def scenario() -> grpc.StatusCode | str:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=metadata)
            node = base_pb2.Node(id=arn, cluster=arn)
            try:  # a refused stream may already be closed when the request is written
                await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=LISTENER))
                response = await asyncio.wait_for(call.read(), 10)
            except grpc.aio.AioRpcError as error:
                return error.code()
            call.cancel()
            return str(response.type_url)

    return asyncio.run(scenario())


def _claim(account: str) -> tuple:
    value = (
        f"AWS4-HMAC-SHA256 Credential={account}/20190125/us-east-1/appmesh/aws4_request, "
        f"SignedHeaders=host, Signature={'0' * 64}"
    )
    return (("authorization", value),)


def test_ads_refuses_unsigned_and_foreign_streams_with_permission_denied(
    server: Server, victim: dict
) -> None:
    assert _ads(server, victim["arn"], ()) == grpc.StatusCode.PERMISSION_DENIED
    foreign = _claim(new_account())
    assert _ads(server, victim["arn"], foreign) == grpc.StatusCode.PERMISSION_DENIED
    assert _ads(server, victim["arn"], _claim(victim["account"])) == LISTENER


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("guarded-xds"), "--verify-signatures", "--credentials", "K=S"
    )
    yield running
    running.stop()


def test_with_verify_signatures_a_claimed_account_is_not_enough(guarded: Server) -> None:
    account = new_account()  # a 12-digit key: its own account, but no known secret
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/prey/virtualNode/blue"
    status, body = post(guarded, "listeners", {"node": {"id": arn}}, account)
    assert (status, body["code"]) == (403, 7)
    assert "signature" in body["message"]


def test_with_verify_signatures_a_proxy_with_real_credentials_gets_its_config(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    account = new_account()
    running = start_server(
        tmp_path_factory.mktemp("verified-xds"),
        "--verify-signatures",
        "--credentials",
        "AKIAPROXY=proxy-secret",
        "--account",
        f"AKIAPROXY={account}",
    )
    try:
        import boto3

        appmesh = boto3.client(
            "appmesh",
            endpoint_url=running.endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIAPROXY",
            aws_secret_access_key="proxy-secret",
        )
        build_mesh(appmesh, "prey")
        arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/prey/virtualNode/blue"
        url = f"{running.endpoint}/v3/discovery:listeners?wait=0"
        body = json.dumps({"node": {"id": arn}}).encode()
        headers = signed_headers("POST", url, body, "AKIAPROXY", "proxy-secret")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.loads(reply.read())["resources"]
    finally:
        running.stop()


def test_with_verify_signatures_a_claimed_account_reads_no_proxies(guarded: Server) -> None:
    url = f"{guarded.endpoint}/_appmesh/proxies"
    claim = (
        f"AWS4-HMAC-SHA256 Credential={new_account()}/20260101/us-east-1/appmesh/aws4_request, "
        f"SignedHeaders=host, Signature={'0' * 64}"
    )
    request = urllib.request.Request(url, headers={"Authorization": claim})
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("a forged credential scope was served")
    except urllib.error.HTTPError as error:
        assert error.code == 403
