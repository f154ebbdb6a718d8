"""The gRPC example's app: ``serve NAME PORT`` runs a color server, ``call`` is its client.

``color.ColorService/GetColor`` answers the server's NAME and the caller's ``team``
metadata. Messages are raw bytes, so neither side needs generated protobuf code. The
client goes through its sidecar's egress port with the virtual service as ``:authority``,
as an app in App Mesh's explicit (no iptables) mode would.
"""

from __future__ import annotations

import argparse
import sys
from concurrent import futures

import grpc

METHOD = "/color.ColorService/GetColor"


def serve(name: str, port: int) -> None:
    def get_color(request: bytes, context: grpc.ServicerContext) -> bytes:
        team = str(dict(context.invocation_metadata()).get("team", ""))
        return f"{name} (team {team or '-'})".encode()

    handler = grpc.method_handlers_generic_handler(
        "color.ColorService", {"GetColor": grpc.unary_unary_rpc_method_handler(get_color)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def call(target: str, authority: str, team: str | None, count: int) -> int:
    options = [("grpc.default_authority", authority)]
    metadata = (("team", team),) if team else ()
    with grpc.insecure_channel(target, options=options) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        for _ in range(count):
            try:
                print(stub(b"", timeout=10, metadata=metadata).decode(), flush=True)
            except grpc.RpcError as error:
                print(f"error: {error.code().name}: {error.details()}", flush=True)
                return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appmesh_api.examples.grpc_app")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="run a color server")
    server.add_argument("name")
    server.add_argument("port", type=int)
    client = commands.add_parser("call", help="call GetColor through a sidecar")
    client.add_argument("target", help="HOST:PORT, the sidecar's egress listener")
    client.add_argument("authority", help="the virtual service to call")
    client.add_argument("--team", help="send this 'team' metadata (routes to blue)")
    client.add_argument("--count", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.name, args.port)
        return 0
    return call(args.target, args.authority, args.team, args.count)


if __name__ == "__main__":
    sys.exit(main())
