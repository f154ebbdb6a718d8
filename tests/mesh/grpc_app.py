"""A gRPC app for the mesh tests: ``grpc_app.py NAME PORT FAILURE_RATE``.

``color.ColorService/GetColor`` answers NAME (and the caller's ``team`` metadata). With a
non-zero FAILURE_RATE the first call fails with UNAVAILABLE, so a retry test is
deterministic. Requests and responses are raw bytes: no protobuf needed.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc


def main() -> None:
    name, port, failure_rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    calls = {"n": 0}

    def get_color(request: bytes, context: grpc.ServicerContext) -> bytes:
        calls["n"] += 1
        if failure_rate and calls["n"] == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} is warming up")
        team = dict(context.invocation_metadata()).get("team", "")
        return f"{name} {team}".strip().encode()

    handler = grpc.method_handlers_generic_handler(
        "color.ColorService", {"GetColor": grpc.unary_unary_rpc_method_handler(get_color)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
