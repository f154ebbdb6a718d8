"""Incremental ADS (DeltaAggregatedResources) over a real socket with grpcio.

``front`` reaches color.local, whose router ``router`` sends to ``blue``. A route's weight
change must send only the one RouteConfiguration it is in; a new target only its new
cluster; a target dropped, its cluster in ``removed_resources``.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from tests.api.helpers import http_node_spec, http_route_spec
from tests.signing import proxies_of
from tests.xds.test_ads import account_metadata, node
from tests.xds.test_discovery import CLUSTER, LISTENER, ROUTES, mesh

__all__ = ["mesh"]  # the fixture
QUIET = 1.5  # seconds in which nothing must arrive


class Delta:
    """One Delta ADS call, its responses by type as they arrive."""

    def __init__(self, channel, account: str) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = stub.DeltaAggregatedResources(metadata=account_metadata(account))
        self.pending: asyncio.Future | None = None

    async def send(self, **fields) -> None:
        await self.call.write(discovery_pb2.DeltaDiscoveryRequest(**fields))

    async def next(self, timeout: float = 10) -> discovery_pb2.DeltaDiscoveryResponse:
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.call.read())
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            raise TimeoutError
        response, self.pending = self.pending.result(), None
        return response

    async def quiet(self) -> bool:
        try:
            await self.next(QUIET)
        except TimeoutError:
            return True
        return False

    async def ack(self, response) -> None:
        await self.send(type_url=response.type_url, response_nonce=response.nonce)


def _names(response) -> set[str]:
    return {resource.name for resource in response.resources}


def _route(appmesh, *targets) -> None:
    appmesh.update_route(
        meshName="xds",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(*targets),
    )


async def _subscribed(delta: Delta, arn: str) -> dict[str, discovery_pb2.DeltaDiscoveryResponse]:
    await delta.send(node=node(arn), type_url=CLUSTER)
    first = {CLUSTER: await delta.next()}
    await delta.ack(first[CLUSTER])
    await delta.send(type_url=LISTENER)
    first[LISTENER] = await delta.next()
    await delta.ack(first[LISTENER])
    await delta.send(type_url=ROUTES, resource_names_subscribe=["rds_egress_http_8080"])
    first[ROUTES] = await delta.next()
    await delta.ack(first[ROUTES])
    return first


def test_delta_ads_sends_only_what_a_change_touched(server, appmesh, mesh):
    appmesh.create_virtual_node(
        meshName="xds", virtualNodeName="green", spec=http_node_spec(hostname="green.local")
    )

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            delta = Delta(channel, mesh["account"])
            first = await _subscribed(delta, mesh["front_arn"])
            assert "cds_egress_xds_blue_http_8080" in _names(first[CLUSTER])
            assert all(
                r.version and r.resource.type_url == CLUSTER for r in first[CLUSTER].resources
            )
            assert "lds_egress_0.0.0.0_15001" in _names(first[LISTENER])
            assert _names(first[ROUTES]) == {"rds_egress_http_8080"}

            await asyncio.to_thread(_route, appmesh, ("blue", 7))
            pushed = await delta.next()
            assert pushed.type_url == ROUTES and _names(pushed) == {"rds_egress_http_8080"}
            assert pushed.resources[0].version != first[ROUTES].resources[0].version
            assert not pushed.removed_resources
            await delta.ack(pushed)
            assert await delta.quiet(), "clusters and listeners did not change: nothing else"

            await asyncio.to_thread(_route, appmesh, ("blue", 1), ("green", 1))
            by_type = {}
            for _ in range(2):
                response = await delta.next()
                by_type[response.type_url] = response
                await delta.ack(response)
            assert _names(by_type[CLUSTER]) == {"cds_egress_xds_green_http_8080"}
            assert _names(by_type[ROUTES]) == {"rds_egress_http_8080"}
            assert await delta.quiet()

            await asyncio.to_thread(_route, appmesh, ("blue", 1))
            by_type = {}
            for _ in range(2):
                response = await delta.next()
                by_type[response.type_url] = response
                await delta.ack(response)
            assert list(by_type[CLUSTER].removed_resources) == ["cds_egress_xds_green_http_8080"]
            assert not by_type[CLUSTER].resources
            delta.call.cancel()

    asyncio.run(scenario())


def test_delta_ads_unsubscribe_nack_and_initial_versions(server, appmesh, mesh):
    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            delta = Delta(channel, mesh["account"])
            first = await _subscribed(delta, mesh["front_arn"])
            await delta.send(type_url=ROUTES, resource_names_unsubscribe=["rds_egress_http_8080"])
            assert await delta.quiet(), "an unsubscribe is not answered"
            await asyncio.to_thread(_route, appmesh, ("blue", 3))
            assert await delta.quiet(), "an unsubscribed route configuration is not sent"

            await delta.send(type_url=ROUTES, resource_names_subscribe=["rds_egress_http_8080"])
            again = await delta.next()
            error = status_pb2.Status(code=3, message="route configuration refused")
            await delta.send(type_url=ROUTES, response_nonce=again.nonce, error_detail=error)
            assert await delta.quiet(), "a NACKed resource is not resent unchanged"
            rejected = await asyncio.to_thread(proxies_of, server.endpoint, mesh["account"])
            assert any("route configuration refused" in str(p.get("rejected")) for p in rejected), (
                rejected
            )
            delta.call.cancel()

            # A reconnecting proxy that already holds the current clusters gets none resent.
            held = {r.name: r.version for r in first[CLUSTER].resources}
            again_stream = Delta(channel, mesh["account"])
            await again_stream.send(
                node=node(mesh["front_arn"]), type_url=CLUSTER, initial_resource_versions=held
            )
            assert await again_stream.quiet()
            again_stream.call.cancel()

    asyncio.run(scenario())


def test_delta_ads_refuses_an_unsigned_stream(server, mesh):
    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            # The server refuses on the call's metadata, before reading a request. Nothing
            # is written: grpcio reports a write that crosses the refusal as INTERNAL
            # ("Internal error from Core") instead of the server's status, which made this
            # test fail now and then when it wrote a request first.
            call = stub.DeltaAggregatedResources()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    asyncio.run(scenario())
