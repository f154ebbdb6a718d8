"""The ``appmesh-local`` command line.

``serve`` is the main job: the App Mesh API and its AWS side services on one port.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from appmesh_api.settings import Settings, default_data_dir, parse_pairs, parse_quotas

DEFAULT_PORT = 4567


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from appmesh_api.app import create_app

    try:
        settings = Settings.from_environment(
            data_dir=None if args.in_memory else Path(args.data_dir),
            aws_endpoint=args.aws_endpoint,
        )
        for item in args.account or ():
            settings.accounts.update(parse_pairs(item, "--account"))
        for item in args.quota or ():
            settings.quotas.update(parse_quotas(item))
    except ValueError as exc:
        print(f"appmesh-local: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # moto's CloudFormation custom resources and Step Functions call back to localhost:MOTO_PORT.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = create_app(settings)
    endpoint = f"http://{args.host}:{args.port}"
    print(f"appmesh-local: App Mesh API and AWS side services on {endpoint}", flush=True)
    print(f"  try: AWS_ENDPOINT_URL={endpoint} aws appmesh list-meshes", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.log_level == "info" else args.log_level,
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appmesh-local",
        description="AWS App Mesh, running locally: the App Mesh API for boto3, the aws CLI "
        "and CDK, with the AWS side services a mesh needs on the same endpoint.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the App Mesh API and side services (the main job)",
        description="Serve the App Mesh REST API (all 38 operations) plus X-Ray, CloudWatch, "
        "Cloud Map, ACM PCA, STS, S3, SSM, IAM, DynamoDB, ECS and CloudFormation from an "
        "embedded moto, all on one port. Point clients at it with AWS_ENDPOINT_URL.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    where = serve.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help="directory for the SQLite state (default %(default)s)",
    )
    where.add_argument(
        "--in-memory", action="store_true", help="keep state in memory only (lost on exit)"
    )
    serve.add_argument(
        "--aws-endpoint",
        metavar="URL",
        help="send side-service calls (X-Ray, Cloud Map, ...) to URL instead of the embedded "
        "moto, e.g. a LocalStack at http://127.0.0.1:4566",
    )
    serve.add_argument(
        "--account",
        action="append",
        metavar="KEY=ACCOUNT",
        help="map an access key id to a 12-digit account id (repeatable; a 12-digit access key "
        "id is already its own account)",
    )
    serve.add_argument(
        "--quota",
        action="append",
        metavar="NAME=N",
        help="override an App Mesh quota, e.g. virtual-nodes-per-mesh=500 (repeatable)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
