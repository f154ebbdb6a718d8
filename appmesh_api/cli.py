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
from envoy_bootstrap.image_ads import IMAGE_ROOT_CERTS

DEFAULT_PORT = 4567
DEFAULT_GRPC_PORT = 15010
DEFAULT_ADS_TLS_PORT = 15011  # what docs/xds.md suggests for serve --xds-tls-port
DEFAULT_XRAY_DAEMON_PORT = 2000


def _reachable(host: str) -> str:
    """An address this machine can dial for a bind address (0.0.0.0 -> 127.0.0.1)."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from appmesh_api.app import create_app
    from appmesh_api.httpserver import BoundedHeadProtocol, StoppingServer

    try:
        settings = Settings.from_environment(
            data_dir=None if args.in_memory else Path(args.data_dir),
            aws_endpoint=args.aws_endpoint,
            store=args.store,
            create_table=args.create_table or None,
            replica_url=args.replica_url,
            xds_host=args.host,
            xds_port=args.xds_port,
            xds_tls_port=args.xds_tls_port,
            xds_tls_cert=args.xds_tls_cert,
            xds_tls_key=args.xds_tls_key,
            xds_tls_names=list(args.xds_tls_name or ()),
            self_endpoint=f"http://{_reachable(args.host)}:{args.port}",
            xray_daemon_host=args.host,
            xray_daemon_port=args.xray_daemon_port,
            verify_signatures=args.verify_signatures,
            moto_admin=args.moto_admin,
            share_all_meshes=args.share_all_meshes,
            xray_max_bytes=args.xray_max_mib * 1024 * 1024,
        )
        for item in args.account or ():
            settings.accounts.update(parse_pairs(item, "--account"))
        for item in args.credentials or ():
            settings.credentials.update(parse_pairs(item, "--credentials"))
        if settings.verify_signatures and not settings.credentials:
            raise ValueError(
                "--verify-signatures needs --credentials KEY=SECRET (or "
                "APPMESH_LOCAL_CREDENTIALS): no request could be signed for it"
            )
        for item in args.quota or ():
            settings.quotas.update(parse_quotas(item))
        if bool(args.xds_tls_cert) != bool(args.xds_tls_key):
            raise ValueError("--xds-tls-cert and --xds-tls-key go together")
        if args.xds_tls_cert and not args.xds_tls_port:
            raise ValueError("--xds-tls-cert needs --xds-tls-port PORT to serve it on")
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # moto's CloudFormation custom resources and Step Functions call back to
        # localhost:MOTO_PORT.
        os.environ.setdefault("MOTO_PORT", str(args.port))
        app = create_app(settings)
    except ValueError as exc:
        print(f"appmesh-local: {exc}", file=sys.stderr)
        return 2
    endpoint = f"http://{args.host}:{args.port}"
    print(f"appmesh-local: App Mesh API and AWS side services on {endpoint}", flush=True)
    if args.xds_port:
        print(
            f"  xDS for proxies: {endpoint}/v3/discovery:<type> and gRPC ADS on "
            f"{args.host}:{args.xds_port}",
            flush=True,
        )
    if args.xds_tls_port:
        _print_ads_tls(args, endpoint, app.state.ads_certificate)
    if args.xray_daemon_port:
        print(
            f"  X-Ray daemon for SDKs and Envoy: udp+tcp {args.host}:{args.xray_daemon_port}",
            flush=True,
        )
    print("  try it from another shell:", flush=True)
    print(
        f"    export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=123456789012 "
        "AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1",
        flush=True,
    )
    print("    aws appmesh create-mesh --mesh-name demo && aws appmesh list-meshes", flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.log_level == "info" else args.log_level,
        loop="uvloop",
        http=BoundedHeadProtocol,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    StoppingServer(config, on_stop=app.state.feed.close).run()
    return 0


def _print_ads_tls(args: argparse.Namespace, endpoint: str, certificate) -> None:
    """Where the TLS ADS port is, and what a task must trust to reach it."""
    print(
        f"  gRPC ADS over TLS (App Mesh's Envoy image) on {args.host}:{args.xds_tls_port}, "
        f"certificate for {', '.join(certificate.names)}",
        flush=True,
    )
    if certificate.ca_pem is not None:
        where = certificate.ca_path or "memory only (--in-memory)"
        print(
            f"    its CA: {where}; also GET {endpoint}/_appmesh/ads-ca.pem or "
            "`appmesh-local ads-ca`",
            flush=True,
        )


def _ads_ca(args: argparse.Namespace) -> int:
    """Print the CA of a running server's TLS ADS port, for a task to trust."""
    import urllib.error
    import urllib.request

    url = f"{args.endpoint.rstrip('/')}/_appmesh/ads-ca.pem"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            sys.stdout.write(reply.read().decode())
    except urllib.error.HTTPError as error:
        print(f"appmesh-local ads-ca: {error.read().decode()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"appmesh-local ads-ca: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    """Print the Envoy bootstrap App Mesh's Envoy image would build from this environment."""
    import json

    from envoy_bootstrap.bootstrap import build_bootstrap
    from envoy_bootstrap.validate import parse_bootstrap

    env = dict(os.environ)
    if args.resource_arn:
        env["APPMESH_RESOURCE_ARN"] = args.resource_arn
    if args.xds_delta and args.like_appmesh_image:
        print(
            "appmesh-local bootstrap: --xds-delta cannot be combined with --like-appmesh-image: "
            "App Mesh's image reached ADS with State of the World (api_type GRPC)",
            file=sys.stderr,
        )
        return 2
    if args.xds_delta:
        env["APPMESH_XDS_DELTA"] = "1"
    try:
        endpoint = args.xds_endpoint or (
            f"127.0.0.1:{DEFAULT_ADS_TLS_PORT}"
            if args.like_appmesh_image
            else f"127.0.0.1:{DEFAULT_GRPC_PORT}"
        )
        bootstrap = build_bootstrap(env, endpoint, args.like_appmesh_image, args.xds_ca_file)
        parse_bootstrap(bootstrap)
    except ValueError as exc:
        print(f"appmesh-local bootstrap: {exc}", file=sys.stderr)
        if "APPMESH_RESOURCE_ARN" in str(exc) or "resource name" in str(exc):
            print(
                "  set --resource-arn (or APPMESH_RESOURCE_ARN / APPMESH_VIRTUAL_NODE_NAME) to "
                "the virtual node or gateway this proxy serves",
                file=sys.stderr,
            )
        return 2
    print(json.dumps(bootstrap, indent=2))
    return 0


def _xray_daemon(args: argparse.Namespace) -> int:
    """Run an X-Ray daemon on its own until interrupted."""
    import asyncio

    from appmesh_api.xray.daemon import parse_bind, serve_forever
    from appmesh_api.xray.destinations import environment_region

    try:
        host, port = parse_bind(args.bind)
    except ValueError as exc:
        print(f"appmesh-local xray-daemon: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve_forever(host, port, args.endpoint, args.region or environment_region()))
    except OSError as exc:
        print(f"appmesh-local xray-daemon: cannot listen on {args.bind}: {exc}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    if args.replicas < 1 or (args.replicas > 1 and (args.endpoint or args.mesh)):
        print(
            "appmesh-local up: --replicas N (1 or more) starts its own control plane for an "
            "example, so it cannot be combined with --endpoint or --mesh",
            file=sys.stderr,
        )
        return 2
    if args.mesh:
        from appmesh_api.sidecars import run_mesh_sidecars
        from appmesh_api.views.endpoint import default_endpoint

        endpoint = args.endpoint or (
            f"http://127.0.0.1:{args.port}" if args.port != DEFAULT_PORT else default_endpoint()
        )
        return run_mesh_sidecars(args.mesh, endpoint, args.mesh_owner, say)
    from appmesh_api.up import run_example

    return run_example(args.example, args.port, args.endpoint, say, args.replicas)


def _mesh_describe(args: argparse.Namespace) -> int:
    from appmesh_api.views.commands import mesh_describe

    return mesh_describe(args.mesh, args.endpoint, args.mesh_owner, args.json)


def _traces(args: argparse.Namespace) -> int:
    from appmesh_api.views.commands import trace_list, trace_waterfall

    if args.trace_id:
        return trace_waterfall(args.endpoint, args.trace_id, args.json)
    return trace_list(args.endpoint, args.minutes, args.filter, args.json)


def _kube(args: argparse.Namespace) -> int:
    from appmesh_api.kube import commands

    if args.kube_command == "get":
        return commands.get(args.kind, args.output, args.endpoint)
    if args.kube_command == "kubeconfig":
        return commands.kubeconfig(args.endpoint)
    return commands.apply_or_delete(
        args.kube_command, args.filename, args.endpoint, args.skip_other_kinds
    )


def _add_kube(commands: argparse._SubParsersAction) -> None:
    kube = commands.add_parser(
        "kube",
        help="apply App Mesh controller manifests (appmesh.k8s.aws/v1beta2)",
        description="Apply, delete and list the App Mesh controller's Kubernetes objects "
        "(Mesh, VirtualNode, VirtualService, VirtualRouter, VirtualGateway, GatewayRoute, "
        "BackendGroup, and Namespace for its labels) on a running appmesh-local, which "
        "reconciles them into App Mesh resources as the controller did. Only those kinds: "
        "appmesh-local is not a Kubernetes cluster.",
    )
    verbs = kube.add_subparsers(dest="kube_command", metavar="COMMAND", required=True)
    for verb, text in (("apply", "create or update"), ("delete", "delete")):
        command = verbs.add_parser(verb, help=f"{text} the objects in files or directories")
        command.add_argument(
            "-f",
            "--filename",
            action="append",
            required=True,
            metavar="PATH",
            help="a manifest file or a directory of them (repeatable)",
        )
        command.add_argument(
            "--skip-other-kinds",
            action="store_true",
            help="skip objects of other kinds (Deployment, Service, ...) instead of refusing "
            "the files, naming each one skipped: appmesh-local runs no workloads",
        )
        _endpoint_option(command)
        command.set_defaults(run=_kube)
    get = verbs.add_parser("get", help="list the stored objects and their App Mesh ARNs")
    get.add_argument("kind", nargs="?", help="only this kind (e.g. virtualnodes)")
    get.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    _endpoint_option(get)
    get.set_defaults(run=_kube)
    config = verbs.add_parser(
        "kubeconfig",
        help="print a kubeconfig so an unmodified kubectl works against appmesh-local",
        description="Print a kubeconfig whose cluster is this account and region's App Mesh "
        "controller objects (from AWS_ACCESS_KEY_ID / AWS_DEFAULT_REGION). Save it and run "
        "kubectl with KUBECONFIG=FILE.",
    )
    _endpoint_option(config)
    config.set_defaults(run=_kube)


def _ecs(args: argparse.Namespace) -> int:
    from appmesh_api.ecs.commands import list_tasks, run_task, stop_task

    if args.ecs_command == "stop-task":
        return stop_task(args.task)
    if args.ecs_command == "list-tasks":
        return list_tasks()
    return run_task(
        args.task_definition,
        args.container or [],
        args.endpoint,
        args.logs,
        args.network_mode,
        args.subnet,
    )


def _add_ecs(commands: argparse._SubParsersAction) -> None:
    ecs = commands.add_parser(
        "ecs",
        help="run an ECS task definition with an App Mesh proxy (proxyConfiguration, or a "
        "virtual gateway's Envoy container) here",
        description="Run a task definition's containers as local processes: the proxy "
        "container becomes appmesh-proxy with its environment, the others run the commands "
        "you give (images cannot run here), in dependsOn order with health checks. Ctrl-C "
        "stops them in ECS's order, the proxy last.",
    )
    verbs = ecs.add_subparsers(dest="ecs_command", metavar="COMMAND", required=True)
    run = verbs.add_parser("run-task", help="run one task until Ctrl-C or an essential exit")
    run.add_argument(
        "--task-definition",
        required=True,
        metavar="FILE|FAMILY[:REV]",
        help="a JSON file (RegisterTaskDefinition's input) or a registered family",
    )
    run.add_argument(
        "--container",
        action="append",
        metavar="NAME='COMMAND'",
        help="the command a container runs instead of its image (repeatable)",
    )
    run.add_argument("--logs", metavar="DIR", help="where container logs go (default: a temp dir)")
    run.add_argument(
        "--network-mode",
        choices=("auto", "awsvpc", "explicit"),
        default="auto",
        help="awsvpc: the task gets a network namespace and address of its own with the "
        "proxyConfiguration's iptables rules (needs root, ip, iptables, setpriv); explicit: "
        "apps use http_proxy to the egress port; auto (default): awsvpc when possible",
    )
    run.add_argument(
        "--subnet",
        default="10.77.0",
        metavar="A.B.C",
        help="the /24 awsvpc tasks get addresses in, when the first task creates it "
        "(default 10.77.0; this host is A.B.C.1)",
    )
    _endpoint_option(run)
    run.set_defaults(run=_ecs)
    stop = verbs.add_parser(
        "stop-task",
        help="stop a running task as Ctrl-C would, the proxy last",
    )
    stop.add_argument("--task", required=True, metavar="ID|FAMILY", help="its id or family")
    stop.set_defaults(run=_ecs)
    listing = verbs.add_parser("list-tasks", help="the tasks run-task is running here")
    listing.set_defaults(run=_ecs)


def _endpoint_option(parser: argparse.ArgumentParser) -> None:
    from appmesh_api.views.endpoint import default_endpoint

    parser.add_argument(
        "--endpoint",
        metavar="URL",
        default=default_endpoint(),
        help="the appmesh-local to read (default $AWS_ENDPOINT_URL or http://127.0.0.1:4567)",
    )


def _add_views(commands: argparse._SubParsersAction) -> None:
    """``mesh describe`` and ``traces``: read a running appmesh-local like any AWS client."""
    mesh = commands.add_parser(
        "mesh",
        help="show a mesh's resources as a tree",
        description="Read a mesh through the App Mesh API of a running appmesh-local.",
    )
    mesh_commands = mesh.add_subparsers(dest="mesh_command", metavar="COMMAND", required=True)
    describe = mesh_commands.add_parser(
        "describe",
        help="print the resource tree of a mesh",
        description="Print a mesh as the tree traffic follows: gateways, gateway routes, "
        "virtual services, routers, routes (matches and weights) and virtual nodes "
        "(listeners, service discovery, backends).",
    )
    describe.add_argument("mesh", metavar="MESH", help="the mesh name")
    _endpoint_option(describe)
    describe.add_argument("--mesh-owner", metavar="ACCT", help="the owner of a shared mesh")
    describe.add_argument("--json", action="store_true", help="print the tree as JSON")
    describe.set_defaults(run=_mesh_describe)

    traces = commands.add_parser(
        "traces",
        help="list recent X-Ray traces, or show one as a waterfall",
        description="Without TRACE_ID, list recent traces (id, root service, status, duration, "
        "request) from X-Ray on the endpoint; with one, draw its segments on a time line.",
    )
    traces.add_argument("trace_id", nargs="?", metavar="TRACE_ID", help="a trace to draw")
    _endpoint_option(traces)
    traces.add_argument(
        "--minutes",
        type=float,
        default=10,
        metavar="N",
        help="how far back to list (default %(default)s)",
    )
    traces.add_argument(
        "--filter",
        metavar="EXPR",
        help="an X-Ray filter expression, e.g. 'fault OR service(\"a\")'",
    )
    traces.add_argument("--json", action="store_true", help="print JSON instead of text")
    traces.set_defaults(run=_traces)


def _add_security_options(serve: argparse.ArgumentParser) -> None:
    """What the front door checks beyond its always-on limits (docs/security.md)."""
    serve.add_argument(
        "--verify-signatures",
        action="store_true",
        help="check every AWS request's SigV4 signature against --credentials and refuse "
        "bad ones as AWS does (default off, as in LocalStack)",
    )
    serve.add_argument(
        "--credentials",
        action="append",
        metavar="KEY=SECRET",
        help="an access key id and its secret key for --verify-signatures (repeatable; also "
        "APPMESH_LOCAL_CREDENTIALS=KEY=SECRET,KEY=SECRET)",
    )
    serve.add_argument(
        "--share-all-meshes",
        action="store_true",
        help="let every account use every mesh with meshOwner, without the RAM share and "
        "accepted invitation App Mesh required (default off)",
    )
    serve.add_argument(
        "--moto-admin",
        action="store_true",
        help="serve moto's /moto-api admin endpoints, which read and reset every account's "
        "side-service state (default closed)",
    )


def _add_ads_tls_options(serve: argparse.ArgumentParser) -> None:
    """gRPC ADS over TLS, for App Mesh's own Envoy image (docs/xds.md)."""
    serve.add_argument(
        "--xds-tls-port",
        type=int,
        default=0,
        metavar="PORT",
        help="also serve gRPC ADS over TLS on PORT, as App Mesh's Envoy image needs "
        "(default 0: off; 15011 is a good choice)",
    )
    serve.add_argument(
        "--xds-tls-cert",
        metavar="PEM",
        help="certificate chain for --xds-tls-port (default: one issued at start by a local "
        "CA kept in DATA_DIR/ads-tls; `appmesh-local ads-ca` prints that CA)",
    )
    serve.add_argument("--xds-tls-key", metavar="PEM", help="private key of --xds-tls-cert")
    serve.add_argument(
        "--xds-tls-name",
        action="append",
        metavar="HOST[:PORT]",
        help="another name tasks reach ADS by, added to the issued certificate and accepted "
        "as the host a signed ADS call names (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appmesh-local",
        description="AWS App Mesh, running locally: the App Mesh API for boto3 and the aws "
        "CLI, the AWS side services a mesh needs on the same endpoint, xDS for proxies, and "
        "the appmesh-proxy sidecar (a separate command).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the App Mesh API and side services (the main job)",
        description="Serve the App Mesh REST API (all 38 operations), X-Ray (service graph, "
        "filters, sampling, and an X-Ray daemon for SDKs and Envoy) and, from an embedded "
        "moto, CloudWatch, Cloud Map, ACM PCA, STS, S3, SSM, IAM, DynamoDB, ECS and "
        "CloudFormation, all on one port. Point clients at it with AWS_ENDPOINT_URL.",
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
        "--store",
        metavar="URL",
        help="keep App Mesh resources in DynamoDB: dynamodb://TABLE[?endpoint=URL&region=R] "
        "(default $APPMESH_LOCAL_STORE, else SQLite in --data-dir); several serve processes "
        "on one table are one control plane (docs/scale-out.md)",
    )
    serve.add_argument(
        "--create-table",
        action="store_true",
        help="create the --store DynamoDB table if it does not exist",
    )
    serve.add_argument(
        "--replica-url",
        metavar="URL",
        help="with --store: the URL the other replicas reach this one at, to nudge it after "
        "their writes (default $APPMESH_LOCAL_REPLICA_URL, else http://HOST:PORT of --host "
        "and --port); a wrong one only makes it wait for its 50 ms poll",
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
    serve.add_argument(
        "--xds-port",
        type=int,
        default=DEFAULT_GRPC_PORT,
        help="port of the gRPC ADS server for Envoy proxies (default %(default)s; 0 turns it "
        "off). REST xDS is always on the main port at /v3/discovery:<type>",
    )
    _add_ads_tls_options(serve)
    serve.add_argument(
        "--xray-daemon-port",
        type=int,
        default=DEFAULT_XRAY_DAEMON_PORT,
        metavar="PORT",
        help="UDP+TCP port of the built-in X-Ray daemon that SDKs and Envoy send segments to "
        "(default %(default)s; 0 turns it off)",
    )
    _add_security_options(serve)
    serve.add_argument(
        "--xray-max-mib",
        type=int,
        default=256,
        metavar="MIB",
        help="MiB of X-Ray segment documents kept over all accounts; the least recently "
        "written traces go first (default %(default)s)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)

    daemon = commands.add_parser(
        "xray-daemon",
        help="run an X-Ray daemon that sends SDK and Envoy segments to an endpoint",
        description="Listen for X-Ray SDK and Envoy segments on UDP and send them in batches "
        "with PutTraceSegments to an X-Ray endpoint; answer the SDKs' sampling polls "
        "(POST /GetSamplingRules, /SamplingTargets) on TCP at the same address by relaying "
        "them, SigV4-signed. `serve` already runs one on port 2000; use this one to send "
        "somewhere else, e.g. --endpoint https://xray.us-east-1.amazonaws.com.",
    )
    daemon.add_argument(
        "--bind",
        default=f"127.0.0.1:{DEFAULT_XRAY_DAEMON_PORT}",
        metavar="HOST:PORT",
        help="UDP and TCP address to listen on (default %(default)s)",
    )
    daemon.add_argument(
        "--endpoint",
        default=f"http://127.0.0.1:{DEFAULT_PORT}",
        metavar="URL",
        help="X-Ray endpoint to send to (default %(default)s, a local appmesh-local)",
    )
    daemon.add_argument(
        "--region",
        help="region to sign for and store under (default $AWS_REGION, $AWS_DEFAULT_REGION "
        "or us-east-1)",
    )
    daemon.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    daemon.set_defaults(run=_xray_daemon)

    bootstrap = commands.add_parser(
        "bootstrap",
        help="print the Envoy bootstrap for a virtual node or gateway",
        description="Print, as JSON, the Envoy v3 bootstrap that App Mesh's Envoy image built "
        "from its environment (APPMESH_RESOURCE_ARN, ENVOY_ADMIN_ACCESS_PORT, "
        "ENABLE_ENVOY_XRAY_TRACING, ENABLE_ENVOY_STATS_TAGS, ENABLE_ENVOY_DOG_STATSD, ...), "
        "with its dynamic resources pointed at this control plane and its node metadata saying "
        "where the proxy listens (APPMESH_INGRESS_PORT, APPMESH_INGRESS_ADDRESS, ...). "
        "appmesh-proxy -c FILE starts from the same file. The output is checked against "
        "Envoy's own Bootstrap schema before it is printed.",
    )
    bootstrap.add_argument(
        "--resource-arn",
        metavar="ARN",
        help="the virtual node or gateway ARN (default: $APPMESH_RESOURCE_ARN)",
    )
    bootstrap.add_argument(
        "--xds-endpoint",
        metavar="HOST:PORT",
        help=f"where the proxy reaches appmesh-local's xDS server (default "
        f"127.0.0.1:{DEFAULT_GRPC_PORT}, or 127.0.0.1:{DEFAULT_ADS_TLS_PORT} with "
        "--like-appmesh-image)",
    )
    bootstrap.add_argument(
        "--like-appmesh-image",
        action="store_true",
        help="reach ADS as App Mesh's Envoy image did: Google gRPC over TLS with the "
        "envoy.grpc_credentials.aws_iam call credentials (service appmesh, AWS_REGION), for "
        "serve --xds-tls-port",
    )
    bootstrap.add_argument(
        "--xds-delta",
        action="store_true",
        help="ADS as incremental xDS (api_type DELTA_GRPC: only changed resources are sent); "
        "the default (and App Mesh's) is State of the World, GRPC ($APPMESH_XDS_DELTA=1 too)",
    )
    bootstrap.add_argument(
        "--xds-ca-file",
        metavar="PEM",
        default=IMAGE_ROOT_CERTS,
        help="with --like-appmesh-image: the CA bundle Envoy trusts for ADS (default the "
        "image's %(default)s; `appmesh-local ads-ca` prints appmesh-local's CA)",
    )
    bootstrap.set_defaults(run=_bootstrap)

    ads_ca = commands.add_parser(
        "ads-ca",
        help="print the CA that a task trusts to reach gRPC ADS over TLS",
        description="Print, as PEM, the local CA that issued the certificate of a running "
        "serve --xds-tls-port (kept in DATA_DIR/ads-tls/ca.pem), for a task to trust: add it "
        "to /etc/pki/tls/cert.pem or point bootstrap --xds-ca-file at it.",
    )
    _endpoint_option(ads_ca)
    ads_ca.set_defaults(run=_ads_ca)

    up = commands.add_parser(
        "up",
        help="run a whole example mesh on this machine (start here)",
        description="Start the control plane, create an example mesh through the App Mesh API, "
        "run its apps with an appmesh-proxy sidecar each, and print the curl to try. Ctrl-C "
        "stops everything. No root and no Docker needed. With --mesh NAME, run only the "
        "sidecars of a mesh already deployed (e.g. by cdk deploy).",
    )
    which = up.add_mutually_exclusive_group()
    which.add_argument(
        "--example",
        choices=["colorapp", "grpc", "mtls"],
        default="colorapp",
        help="which mesh: colorapp (HTTP, traffic shifting; the default), grpc (gRPC "
        "routes by method and metadata, HTTP/2 on every hop) or mtls (STRICT mutual TLS "
        "between two sidecars, certificates made on the spot)",
    )
    which.add_argument(
        "--mesh",
        metavar="NAME",
        help="instead of an example, run an appmesh-proxy for every virtual node and gateway "
        "of this mesh, already deployed on the running appmesh-local (cdk deploy, aws "
        "cloudformation deploy, the API); your apps are yours to start",
    )
    up.add_argument("--mesh-owner", metavar="ACCT", help="with --mesh: the owner of a shared mesh")
    up.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"control-plane port (default {DEFAULT_PORT})",
    )
    up.add_argument(
        "--endpoint",
        metavar="URL",
        help="use an appmesh-local that is already running instead of starting one",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="run N control-plane replicas on one DynamoDB table (moto's, started too) on "
        "--port, --port+1, ...; the sidecars fail over between them (docs/scale-out.md)",
    )
    up.set_defaults(run=_up)
    _add_views(commands)
    _add_kube(commands)
    _add_ecs(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
