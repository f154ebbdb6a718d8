"""gRPC ADS, as a real Envoy uses it: one stream, every type, push on change, NACK, errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format, struct_pb2
from google.rpc import status_pb2

from envoy_bootstrap.bootstrap import build_bootstrap
from envoy_bootstrap.validate import message_class
from tests.api.helpers import build_mesh, http_node_spec, http_route_spec
from tests.signing import proxies_of, signed_headers
from tests.xds.test_discovery import CLUSTER, LISTENER

ROUTES = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def account_metadata(account: str) -> tuple[tuple[str, str], ...]:
    """The SigV4 ``authorization`` an ADS call carries, for ``account`` (as Envoy's plugin)."""
    url = "http://127.0.0.1/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
    headers = signed_headers("POST", url, b"", account)
    return (("authorization", headers["Authorization"]), ("x-amz-date", headers["X-Amz-Date"]))


def node(node_id: str, **metadata: str) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(metadata)
    return base_pb2.Node(id=node_id, cluster=node_id, metadata=meta)


async def next_response(call) -> discovery_pb2.DiscoveryResponse:
    return await asyncio.wait_for(call.read(), timeout=10)


def names_of(response: discovery_pb2.DiscoveryResponse) -> set[str]:
    found = set()
    for packed in response.resources:
        message = message_class(packed.type_url)()
        packed.Unpack(message)
        found.add(getattr(message, "name", "") or getattr(message, "cluster_name", ""))
    return found


def test_an_ads_stream_gets_every_type_and_a_push_on_change(server, appmesh, account):
    build_mesh(appmesh, "ads")
    # blue reaches color.local, so the route change below is in its config.
    backends = [{"virtualService": {"virtualServiceName": "color.local"}}]
    appmesh.update_virtual_node(
        meshName="ads", virtualNodeName="blue", spec=http_node_spec(backends=backends)
    )
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/ads/virtualNode/blue"

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=account_metadata(account))
            await call.write(discovery_pb2.DiscoveryRequest(node=node(arn), type_url=CLUSTER))
            clusters = await next_response(call)
            assert "cds_ingress_ads_blue_http_8080" in names_of(clusters)
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=CLUSTER,
                    version_info=clusters.version_info,
                    response_nonce=clusters.nonce,
                )
            )
            await call.write(discovery_pb2.DiscoveryRequest(type_url=LISTENER))
            listeners = await next_response(call)
            assert listeners.type_url == LISTENER
            assert "lds_ingress_0.0.0.0_15000" in names_of(listeners)
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=LISTENER,
                    version_info=listeners.version_info,
                    response_nonce=listeners.nonce,
                )
            )
            await asyncio.to_thread(
                appmesh.update_route,
                meshName="ads",
                virtualRouterName="router",
                routeName="route",
                spec=http_route_spec(("blue", 7)),
            )
            pushed = {}
            while len(pushed) < 2:
                response = await next_response(call)
                pushed[response.type_url] = response
            assert pushed[CLUSTER].version_info != clusters.version_info
            assert pushed[LISTENER].version_info == pushed[CLUSTER].version_info
            nack = discovery_pb2.DiscoveryRequest(
                type_url=LISTENER,
                version_info=listeners.version_info,
                response_nonce=pushed[LISTENER].nonce,
                error_detail=status_pb2.Status(code=3, message="rejected on purpose"),
            )
            await call.write(nack)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call.read(), timeout=0.5)
            call.cancel()

    asyncio.run(scenario())


def test_an_unknown_node_closes_the_stream_with_not_found(server):
    async def scenario() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=account_metadata("123456789012"))
            missing = "arn:aws:appmesh:us-east-1:123456789012:mesh/none/virtualNode/none"
            await call.write(discovery_pb2.DiscoveryRequest(node=node(missing), type_url=LISTENER))
            with pytest.raises(grpc.aio.AioRpcError) as closed:
                await call.read()
            return closed.value.code()

    assert asyncio.run(scenario()) == grpc.StatusCode.NOT_FOUND


def test_an_envoy_started_from_appmesh_local_bootstrap_registers_its_ingress(
    server, appmesh, account
):
    """The node and call metadata exactly as the printed bootstrap gives them to Envoy:
    the control plane registers the ingress address from the node metadata, as it does
    for appmesh-proxy, so other nodes' traffic reaches this Envoy."""
    build_mesh(appmesh, "adsboot")
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/adsboot/virtualNode/blue"
    env = {"APPMESH_RESOURCE_ARN": arn, "APPMESH_INGRESS_ADDRESS": "127.0.0.9:15000"}
    bootstrap = build_bootstrap(env, f"127.0.0.1:{server.xds_port}")
    envoy_node = json_format.ParseDict(bootstrap["node"], base_pb2.Node())
    (service,) = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"]
    metadata = tuple((m["key"], m["value"]) for m in service["initial_metadata"])

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=metadata)
            await call.write(discovery_pb2.DiscoveryRequest(node=envoy_node, type_url=LISTENER))
            assert "lds_ingress_0.0.0.0_15000" in names_of(await next_response(call))
            call.cancel()

    asyncio.run(scenario())
    (proxy,) = [p for p in proxies_of(server.endpoint, account) if p["nodeId"] == arn]
    assert proxy["ingressAddress"] == "127.0.0.9:15000"
