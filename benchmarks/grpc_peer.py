"""Both ends of benchmarks/proxy_grpc.py's calls: a grpcio server and a grpcio client.

    python benchmarks/grpc_peer.py serve PORT
    python benchmarks/grpc_peer.py call PORT AUTHORITY SECONDS CONCURRENCY

The server answers ``/bench.Echo/Call`` (unary, bytes in, the same bytes out) with no
serialisation, so what is measured is gRPC and the proxies, not protobuf. The client
keeps CONCURRENCY calls in flight on one channel (grpc.aio) for SECONDS (the loop is
bounded by that deadline), sending ``:authority`` AUTHORITY (the virtual service a
sidecar routes by), and prints one JSON line: calls, errors, seconds, p50 and p99 in ms.
Each runs in its own process so that the benchmark can pin it to a CPU.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import grpc

SERVICE, METHOD = "bench.Echo", "Call"
PAYLOAD = b"x" * 100


def serve(port: int) -> None:
    from concurrent import futures

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


async def call(port: int, authority: str, seconds: float, concurrency: int) -> dict[str, float]:
    options = [("grpc.default_authority", authority)] if authority else []
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        method = channel.unary_unary(f"/{SERVICE}/{METHOD}")
        await method(PAYLOAD, timeout=10)  # connected, and the route works
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < deadline:
                try:
                    answer = await method(PAYLOAD, timeout=10)
                    if answer != PAYLOAD:
                        errors += 1
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - now)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "calls": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[int(len(ordered) * 0.99)] * 1000,
    }


def main() -> None:
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        port, authority, seconds, concurrency = sys.argv[2:6]
        result = asyncio.run(call(int(port), authority, float(seconds), int(concurrency)))
        print(json.dumps(result))


if __name__ == "__main__":
    main()
