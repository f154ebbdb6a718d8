"""What the Delta client says it holds after a response it refused in part.

A real grpcio Delta ADS server on 127.0.0.1, scripted: clusters ``c`` (version 1), then,
once that is ACKed, ``c`` version 2 with HTTP/2 settings this proxy does not apply, a
new ``d`` with the same, and a new plain ``e``. The proxy serves ``c`` version 1 and
``e``, leaves ``d`` out and NACKs; the server then ends the stream (a replica
restarting), and the proxy's first request on the next stream says in
``initial_resource_versions`` what it really holds: ``c`` at 1, ``e`` at 2, no ``d``.
Were ``c`` reported at 2, the control plane would believe the proxy has it and never
send it again.
"""

from __future__ import annotations

import asyncio
import time
from concurrent import futures
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format
from proxy_envoy import CLUSTER, LISTENER, cluster

from appmesh_api.localports import free_port
from proxy.xds.delta import DeltaClient

NODE = {"id": "arn:aws:appmesh:us-east-1:123456789012:mesh/demo/virtualNode/front"}
OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
Response = discovery_pb2.DeltaDiscoveryResponse


def tuned(name: str) -> dict[str, Any]:
    """A cluster with an HTTP/2 setting this proxy refuses (it does not apply it)."""
    http2 = {"explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 9}}}
    options = {OPTIONS: {"@type": f"type.googleapis.com/{OPTIONS}", **http2}}
    return cluster(name, [9], typed_extension_protocol_options=options)


def clusters(nonce: str, *named: tuple[str, str, dict[str, Any]]) -> Response:
    response = Response(type_url=CLUSTER, nonce=nonce)
    for name, version, spec in named:
        body = {key: value for key, value in spec.items() if key != "@type"}
        item = response.resources.add(name=name, version=version)
        item.resource.Pack(json_format.ParseDict(body, cluster_pb2.Cluster()))
    return response


class ScriptedAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """The script above on the first stream; later streams are only recorded."""

    def __init__(self) -> None:
        self.streams: list[list[discovery_pb2.DeltaDiscoveryRequest]] = []

    def DeltaAggregatedResources(self, request_iterator, context):
        requests: list[discovery_pb2.DeltaDiscoveryRequest] = []
        self.streams.append(requests)
        first = len(self.streams) == 1
        for request in request_iterator:
            requests.append(request)
            if not first:
                continue
            if request.type_url == LISTENER and not request.response_nonce:
                yield Response(type_url=LISTENER, nonce="listeners")
            elif request.type_url == CLUSTER and not request.response_nonce:
                yield clusters("v1", ("c", "1", cluster("c", [9])))
            elif request.response_nonce == "v1" and not request.error_detail.message:
                yield clusters("v2", ("c", "2", tuned("c")), ("d", "2", tuned("d")),
                               ("e", "2", cluster("e", [9])))  # fmt: skip
            elif request.response_nonce == "v2":
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")


async def until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_refused_resource_keeps_the_version_the_proxy_still_serves() -> None:
    ads, port = ScriptedAds(), free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    applied: list[set[str]] = []

    async def apply(resources: list[dict[str, Any]], _version: str) -> None:
        applied.append({r["name"] for r in resources if r["@type"] == CLUSTER})

    xds = DeltaClient(f"127.0.0.1:{port}", NODE, apply, backoff_base=0.05)
    await xds.start()
    try:
        await until(lambda: len(ads.streams) == 2 and bool(ads.streams[1]))
        nack = [r for r in ads.streams[0] if r.response_nonce == "v2"]
        assert nack and "max_concurrent_streams" in nack[0].error_detail.message
        assert applied[-1] == {"c", "e"}, applied
        assert xds.subs["clusters"].versions == {"c": "1", "e": "2"}
        again = next(r for r in ads.streams[1] if r.type_url == CLUSTER)
        assert dict(again.initial_resource_versions) == {"c": "1", "e": "2"}
    finally:
        await xds.stop()
        server.stop(grace=None)
