"""A change pushes only to the proxies whose config depends on it (REST and gRPC ADS).

``front`` reaches color.local (router ``router`` → node ``blue``); ``lone`` reaches
nothing. A route change must reach front's long-poll and stream, and leave lone's held:
its version does not move, and it is not answered until something it depends on changes.
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.api.helpers import http_node_spec, http_route_spec
from tests.xds.test_ads import account_metadata, next_response, node
from tests.xds.test_discovery import CLUSTER, discover, mesh, node_request

__all__ = ["mesh"]  # the fixture


def _change_route(appmesh, weight: int) -> None:
    appmesh.update_route(
        meshName="xds",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("blue", weight)),
    )


def _poll(server, arn: str, version: str, outcome: dict, wait: float) -> None:
    request = node_request(arn, version_info=version, response_nonce=version)
    outcome["status"], outcome["answer"] = discover(server, "clusters", request, wait=wait)
    outcome["at"] = time.monotonic()


def test_a_route_change_answers_only_the_long_polls_that_depend_on_it(server, appmesh, mesh):
    appmesh.create_virtual_node(meshName="xds", virtualNodeName="lone", spec=http_node_spec())
    lone_arn = mesh["front_arn"].replace("/front", "/lone")
    versions = {}
    for arn in (mesh["front_arn"], lone_arn):
        versions[arn] = discover(server, "clusters", node_request(arn))[1]["version_info"]
    outcomes: dict[str, dict] = {arn: {} for arn in versions}
    threads = [
        threading.Thread(target=_poll, args=(server, arn, versions[arn], outcomes[arn], 3))
        for arn in versions
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    changed_at = time.monotonic()
    _change_route(appmesh, 9)
    for thread in threads:
        thread.join(timeout=20)
    front, lone = outcomes[mesh["front_arn"]], outcomes[lone_arn]
    assert front["status"] == 200 and front["answer"]["version_info"] != versions[mesh["front_arn"]]
    assert front["at"] - changed_at < 2
    assert lone["status"] == 304, "a node that does not reach the route must stay held"
    _, again = discover(server, "clusters", node_request(lone_arn))
    assert again["version_info"] == versions[lone_arn]


def test_an_ads_stream_of_an_unaffected_node_gets_no_push(server, appmesh, mesh):
    appmesh.create_virtual_node(meshName="xds", virtualNodeName="lone", spec=http_node_spec())
    arns = [mesh["front_arn"], mesh["front_arn"].replace("/front", "/lone")]

    async def subscribe(channel, arn):
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(metadata=account_metadata(mesh["account"]))
        await call.write(discovery_pb2.DiscoveryRequest(node=node(arn), type_url=CLUSTER))
        first = await next_response(call)
        ack = discovery_pb2.DiscoveryRequest(
            type_url=CLUSTER, version_info=first.version_info, response_nonce=first.nonce
        )
        await call.write(ack)
        return call, first

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
            (front, front_first), (lone, lone_first) = [
                await subscribe(channel, arn) for arn in arns
            ]
            await asyncio.to_thread(_change_route, appmesh, 5)
            pushed = await asyncio.wait_for(front.read(), 10)
            assert pushed.version_info != front_first.version_info
            lone_next = asyncio.ensure_future(lone.read())
            done, _ = await asyncio.wait({lone_next}, timeout=1.5)
            assert not done, "lone does not reach the route: nothing to push"
            # Something lone depends on (itself) does reach it.
            spec = http_node_spec(hostname="lone2.local")
            await asyncio.to_thread(
                appmesh.update_virtual_node, meshName="xds", virtualNodeName="lone", spec=spec
            )
            moved = await asyncio.wait_for(lone_next, 10)
            assert moved.version_info != lone_first.version_info
            for call in (front, lone):
                call.cancel()

    asyncio.run(scenario())
