"""``appmesh-proxy``: the sidecar, started from an Envoy v3 bootstrap as Envoy is.

``appmesh-proxy -c bootstrap.json`` reads the bootstrap like ``envoy -c``. Without
``-c`` it builds the bootstrap App Mesh's Envoy image built from its environment
(``envoy_bootstrap``, what ``appmesh-local bootstrap`` prints), so an ECS task
definition or Kubernetes manifest written for App Mesh needs only the image swapped:
the same variables name the resource, the admin port, the tracer and the sinks. Three
more, for running several proxies on one machine without iptables, say where this
proxy listens and where its app is; they travel in the node metadata, which is how the
control plane learns them:

    APPMESH_INGRESS_PORT (15000)   APPMESH_EGRESS_PORT (15001)   APPMESH_APP_HOST (127.0.0.1)
    APPMESH_INGRESS_ADDRESS        host:port other proxies use to reach this one's ingress
                                   (default 127.0.0.1:<ingress port>)

``ENVOY_LOG_LEVEL``, ``ENVOY_CONCURRENCY`` and ``LISTENER_DRAIN_WAIT_TIME_S`` were the
image's command line, not its bootstrap: ``-l``, ``--concurrency`` and
``--drain-time-s`` override them. The environment is read only in ``envoy_bootstrap``.

``appmesh-proxy iptables apply|remove|print`` installs App Mesh's interception rules
from the EKS proxy-route-manager variables (APPMESH_APP_PORTS, APPMESH_IGNORE_UID, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envoy_bootstrap.bootstrap import build_bootstrap, xds_delta, xds_endpoint
from envoy_bootstrap.command_line import LOG_LEVELS, command_line
from proxy.config.bootstrap import BootstrapConfig, compile_bootstrap, load_bootstrap
from proxy.xds_auth import (
    Credentials,
    call_signer,
    credentials_from,
    node_account,
    xds_signer,
)

if TYPE_CHECKING:
    from proxy.server import ProxyServer
    from proxy.xds.state import DiscoveryState

log = logging.getLogger("appmesh_proxy")

DEFAULT_XDS_ENDPOINT = "http://127.0.0.1:4567"  # appmesh-local's REST xDS
DEFAULT_DELTA_ENDPOINT = "127.0.0.1:15010"  # its gRPC ADS port, for APPMESH_XDS_DELTA

_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


@dataclass(frozen=True)
class ProxySettings:
    """The compiled bootstrap, and what Envoy takes on its command line."""

    bootstrap: BootstrapConfig
    #: (access key, secret, session token) that sign xDS requests (proxy.xds_auth)
    xds_credentials: tuple[str, str, str | None] = ("", "", None)
    log_level: str = "info"
    workers: int = 1  # --concurrency: processes sharing each port with SO_REUSEPORT
    drain_seconds: float = 20.0
    worker_index: int = 0  # set by the first worker for the ones it starts


def load_settings(args: argparse.Namespace, env: Mapping[str, str]) -> ProxySettings:
    """The bootstrap (``-c``, else built from ``env``) and the command line (flags, else
    the image's variables). Raises ``ValueError`` (``ConfigError`` included) or
    ``OSError`` with a one-line reason."""
    line = command_line(env)
    if args.config_path:
        spec = load_bootstrap(args.config_path)
    else:
        default = DEFAULT_DELTA_ENDPOINT if xds_delta(env) else DEFAULT_XDS_ENDPOINT
        spec = build_bootstrap(env, xds_endpoint(env, default))
    bootstrap = compile_bootstrap(spec)
    account = node_account(bootstrap.node_id, bootstrap.metadata("mesh_owner"))
    credentials = credentials_from(env, account)  # the task's AWS credentials, as Envoy's
    return ProxySettings(
        bootstrap=bootstrap,
        xds_credentials=(credentials.access_key, credentials.secret_key, credentials.token),
        log_level=args.log_level or line.log_level,
        workers=max(1, args.concurrency or line.concurrency),
        drain_seconds=line.drain_seconds if args.drain_time_s is None else args.drain_time_s,
        worker_index=args.worker_index,
    )


async def run_proxy(settings: ProxySettings, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then drain and exit."""
    from proxy.server import ProxyServer

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bootstrap = settings.bootstrap
    for note in bootstrap.notes:
        log.warning("%s", note)
    # Only the first worker serves the admin port; each worker keeps its own stats.
    admin = bootstrap.admin_address if settings.worker_index == 0 else None
    server = ProxyServer(
        admin_address=admin,
        bootstrap=bootstrap,
        reuse_port=settings.workers > 1,
        drain_seconds=settings.drain_seconds,
    )
    await server.start()
    # Back-off capped at 10 s: a local control plane that restarts is back within seconds,
    # and its proxies should follow it promptly.
    client = _xds_client(settings, server)
    await client.start()
    log.info(
        "appmesh-proxy for %s: control plane %s (%s), admin %s, ingress :%s, egress :%s",
        bootstrap.node_id,
        ", ".join(bootstrap.xds_endpoints),
        "incremental ADS" if bootstrap.xds_delta else "REST xDS",
        f"{admin[0]}:{admin[1]}" if admin else "off",
        bootstrap.metadata("ingress_port", "?"),
        bootstrap.metadata("egress_port", "?"),
    )
    await stop.wait()
    log.info("draining for up to %.0f s (LISTENER_DRAIN_WAIT_TIME_S)", settings.drain_seconds)
    await client.stop()
    await server.stop(drain_seconds=settings.drain_seconds)


def _xds_client(settings: ProxySettings, server: ProxyServer) -> DiscoveryState:
    """The bootstrap's transport: REST long-poll for ``api_type: GRPC``, incremental ADS
    over gRPC (which alone loads protobuf; gRPC itself is spoken over h2) for ``DELTA_GRPC``."""
    bootstrap = settings.bootstrap
    region = str(bootstrap.metadata("region", "us-east-1"))
    credentials = Credentials(*settings.xds_credentials)
    agent = bootstrap.sds_agent.cluster if bootstrap.sds_agent else ""
    if bootstrap.xds_delta:
        from proxy.xds.delta import (
            KEEPALIVE_INTERVAL,
            KEEPALIVE_JITTER,
            KEEPALIVE_TIMEOUT,
            DeltaClient,
        )

        default = (KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, KEEPALIVE_JITTER)
        keepalive = bootstrap.xds_keepalive or default
        return DeltaClient(
            bootstrap.xds_endpoints,
            bootstrap.node,
            server.apply,
            stats=server.stats,
            backoff_max=10.0,
            sign=call_signer(credentials, region),
            agent_cluster=agent,
            keepalive_interval=keepalive[0],
            keepalive_timeout=keepalive[1],
            keepalive_jitter=keepalive[2],
        )
    from proxy.xds.rest import XdsClient

    return XdsClient(
        bootstrap.xds_endpoints,
        bootstrap.node,
        server.apply,
        stats=server.stats,
        backoff_max=10.0,
        sign=xds_signer(credentials, region),
        agent_cluster=agent,
    )


def _serve(args: argparse.Namespace, argv: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        settings = load_settings(args, env)
    except (ValueError, OSError) as exc:
        missing_node = not args.config_path and "APPMESH_RESOURCE_ARN" in str(exc)
        hint = " (or start from a bootstrap: appmesh-proxy -c FILE)" if missing_node else ""
        print(f"appmesh-proxy: {exc}{hint}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=_LOG_LEVELS.get(settings.log_level, logging.INFO),
        format="[%(asctime)s][%(levelname)s][%(name)s] %(message)s",
    )
    import uvloop

    others = _start_other_workers(settings, argv, env)
    try:
        uvloop.run(run_proxy(settings))
    finally:
        for worker in others:
            worker.terminate()
        for worker in others:
            worker.wait()
    return 0


def _start_other_workers(
    settings: ProxySettings, argv: Sequence[str], env: Mapping[str, str]
) -> list[Any]:
    """With --concurrency N the first worker starts N-1 more (same ports, SO_REUSEPORT):
    Python runs one core per process, as Envoy's concurrency runs one per thread."""
    import subprocess

    if settings.worker_index != 0 or settings.workers <= 1:
        return []
    log.info("starting %d more workers (concurrency %d)", settings.workers - 1, settings.workers)
    command = [sys.executable, "-m", "proxy.main", *argv]
    return [
        subprocess.Popen([*command, "--worker-index", str(index)], env=dict(env))
        for index in range(1, settings.workers)
    ]


def _iptables(action: str, env: Mapping[str, str]) -> int:
    from proxy.interception import iptables as interception

    try:
        config = interception.Interception.from_environment(env)
    except ValueError as exc:
        print(f"appmesh-proxy iptables: {exc}", file=sys.stderr)
        return 2
    if action == "print":
        for rule in interception.install_rules(config):
            print("iptables " + " ".join(rule))
        return 0
    try:
        if action == "apply":
            interception.apply(config)
        else:
            interception.remove()
    except RuntimeError as exc:
        print(f"appmesh-proxy iptables: {exc}", file=sys.stderr)
        return 1
    print(f"appmesh-proxy iptables: {action} done")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appmesh-proxy",
        description="The appmesh-local sidecar. With no command it runs the proxy from an "
        "Envoy v3 bootstrap: the one given with -c, or the one App Mesh's Envoy image built "
        "from its environment (APPMESH_RESOURCE_ARN, APPMESH_XDS_ENDPOINT, "
        "ENVOY_ADMIN_ACCESS_PORT, ENABLE_ENVOY_XRAY_TRACING, APPMESH_METRIC_EXTENSION_VERSION, "
        "ENABLE_ENVOY_DOG_STATSD, ...; see `appmesh-local bootstrap`), plus "
        "APPMESH_INGRESS_PORT, APPMESH_EGRESS_PORT, APPMESH_APP_HOST and "
        "APPMESH_INGRESS_ADDRESS in its node metadata.",
    )
    parser.add_argument(
        "-c",
        "--config-path",
        metavar="FILE",
        help="start from this Envoy v3 bootstrap (JSON, or YAML with PyYAML), as envoy -c",
    )
    parser.add_argument(
        "-l", "--log-level", choices=LOG_LEVELS, help="log level (default $ENVOY_LOG_LEVEL, info)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="worker processes sharing every port (default $ENVOY_CONCURRENCY, 1)",
    )
    parser.add_argument(
        "--drain-time-s",
        type=float,
        metavar="SECONDS",
        help="how long SIGTERM drains (default $LISTENER_DRAIN_WAIT_TIME_S, 20)",
    )
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    iptables = commands.add_parser(
        "iptables",
        help="install or remove App Mesh's traffic interception rules (root)",
        description="Apply, remove or print the APPMESH_INGRESS/APPMESH_EGRESS nat chains, from "
        "APPMESH_APP_PORTS, APPMESH_IGNORE_UID/GID, APPMESH_ENVOY_INGRESS_PORT, "
        "APPMESH_ENVOY_EGRESS_PORT, APPMESH_EGRESS_IGNORED_IP and APPMESH_EGRESS_IGNORED_PORTS "
        "(the EKS proxy-route-manager's variables).",
    )
    iptables.add_argument("action", choices=["apply", "remove", "print"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "iptables":
        return _iptables(args.action, os.environ)
    return _serve(args, argv, os.environ)


if __name__ == "__main__":
    sys.exit(main())
