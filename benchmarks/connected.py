"""What connected proxies cost the control plane: RSS, and CPU per push.

Helpers for benchmarks/scale.py: the server's RSS before and after parking N REST
long-polls, and N gRPC ADS streams (each its own channel, as N Envoys would be), all
for one node; and a process's CPU time from /proc, for the CPU a push costs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp
import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

CLUSTERS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of the processes' threads, from the scheduler's nanosecond counters
    (``/proc/PID/task/*/schedstat``): utime and stime count 10 ms ticks, as coarse as
    what one push costs. A thread that ended meanwhile drops out of the sum, so use it
    over spans the processes' threads outlive (their pools and loops do)."""
    total = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                    total += int(stat.read().split()[0])
            except FileNotFoundError:  # the thread ended between the listing and the read
                continue
    return total / 1e9


def _scope(account: str) -> str:
    """A credential scope naming ``account`` (enough without --verify-signatures)."""
    day = time.strftime("%Y%m%d", time.gmtime())
    return (
        f"AWS4-HMAC-SHA256 Credential={account}/{day}/us-east-1/appmesh/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64
    )


async def park_long_polls(
    endpoint: str, account: str, arn: str, count: int, settle: float
) -> list[asyncio.Task]:
    """``count`` long-polls (``?wait=60``) holding the node's current version, parked."""
    url = f"{endpoint}/v3/discovery:clusters"
    headers = {"authorization": _scope(account)}
    first = json.dumps({"node": {"id": arn}}).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=first, headers=headers) as answer,
    ):
        version = (await answer.json())["version_info"]
    body = json.dumps(
        {"node": {"id": arn}, "version_info": version, "response_nonce": version}
    ).encode()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))

    async def one() -> None:
        async with session.post(url + "?wait=60", data=body, headers=headers) as answer:
            await answer.read()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    tasks.append(asyncio.create_task(_close_later(session, tasks)))
    await asyncio.sleep(settle)
    return tasks


async def _close_later(session: aiohttp.ClientSession, tasks: list[asyncio.Task]) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()


async def open_ads_streams(
    address: str, account: str, arn: str, count: int
) -> tuple[list[grpc.aio.Channel], list]:
    """``count`` ADS streams, each on its own channel, each holding its first CDS answer."""
    metadata = (("authorization", _scope(account)),)
    channels = [grpc.aio.insecure_channel(address) for _ in range(count)]
    calls = []
    gate = asyncio.Semaphore(100)

    async def one(channel: grpc.aio.Channel) -> None:
        async with gate:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=metadata)
            request = discovery_pb2.DiscoveryRequest(
                node=base_pb2.Node(id=arn, cluster=arn), type_url=CLUSTERS
            )
            await call.write(request)
            answer = await asyncio.wait_for(call.read(), 60)
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=CLUSTERS, version_info=answer.version_info, response_nonce=answer.nonce
                )
            )
            calls.append(call)

    await asyncio.gather(*(one(channel) for channel in channels))
    return channels, calls


async def connected_rss(
    pid: int, endpoint: str, ads_address: str, account: str, arn: str, count: int
) -> dict[str, float]:
    """Server RSS (MiB): idle, with ``count`` long-polls parked, then with ``count`` ADS
    streams open (the long-polls answered and gone)."""
    idle = rss_mib(pid)
    tasks = await park_long_polls(endpoint, account, arn, count, settle=3.0 + count / 500)
    polls = rss_mib(pid)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2.0)
    before_ads = rss_mib(pid)
    channels, calls = await open_ads_streams(ads_address, account, arn, count)
    await asyncio.sleep(2.0)
    streams = rss_mib(pid)
    for call in calls:
        call.cancel()
    await asyncio.gather(*(channel.close() for channel in channels))
    return {
        "idle MiB": idle,
        "long-polls MiB": polls,
        "long-poll KiB each": (polls - idle) * 1024 / count,
        "before ADS MiB": before_ads,
        "ADS streams MiB": streams,
        "ADS KiB each": (streams - before_ads) * 1024 / count,
    }
