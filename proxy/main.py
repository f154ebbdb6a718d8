"""``appmesh-proxy``: the sidecar, configured like App Mesh's Envoy image.

An ECS task definition or Kubernetes manifest written for App Mesh needs only the
image swapped: the same environment variables name the resource, the admin port,
the log level and the drain time. Three more, for running several proxies on one
machine without iptables, say where this proxy listens and where its app is:

    APPMESH_INGRESS_PORT (15000)   APPMESH_EGRESS_PORT (15001)   APPMESH_APP_HOST (127.0.0.1)
    APPMESH_INGRESS_ADDRESS        host:port other proxies use to reach this one's ingress
                                   (default 127.0.0.1:<ingress port>)

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
from typing import Any

from botocore.credentials import Credentials

from proxy.config.observability import OFF, ObservabilityConfig
from proxy.xds_auth import credentials_from, node_account, xds_signer

log = logging.getLogger("appmesh_proxy")

WORKER_INDEX_VARIABLE = "APPMESH_PROXY_WORKER_INDEX"

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
    """Everything the environment says about this proxy."""

    node_id: str
    node_cluster: str
    xds_endpoint: str
    admin_port: int
    ingress_port: int
    egress_port: int
    app_host: str
    listen_address: str
    ingress_address: str
    region: str
    mesh_owner: str | None
    drain_seconds: float
    log_level: str
    observability: ObservabilityConfig = OFF
    #: (access key, secret, session token) that sign xDS requests (proxy.xds_auth)
    xds_credentials: tuple[str, str, str | None] = ("", "", None)
    workers: int = 1  # ENVOY_CONCURRENCY: processes sharing each port with SO_REUSEPORT
    worker_index: int = 0  # set by the first worker for the ones it starts

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ProxySettings:
        node_id = (
            env.get("APPMESH_RESOURCE_ARN")
            or env.get("APPMESH_RESOURCE_NAME")
            or env.get("APPMESH_VIRTUAL_NODE_NAME")
        )
        if not node_id:
            raise ValueError(
                "set APPMESH_RESOURCE_ARN (or APPMESH_VIRTUAL_NODE_NAME=mesh/<mesh>/virtualNode/"
                "<node>) to the virtual node or gateway this proxy serves"
            )
        ingress_port = int(env.get("APPMESH_INGRESS_PORT", 15000))
        cluster = env.get("APPMESH_RESOURCE_CLUSTER") or env.get("APPMESH_VIRTUAL_NODE_CLUSTER")
        mesh_owner = env.get("APPMESH_MESH_OWNER") or None
        credentials = credentials_from(env, node_account(node_id, mesh_owner))
        return cls(
            node_id=node_id,
            node_cluster=cluster or node_id,
            xds_endpoint=env.get("APPMESH_XDS_ENDPOINT", "http://127.0.0.1:4567"),
            admin_port=int(env.get("ENVOY_ADMIN_ACCESS_PORT", 9901)),
            ingress_port=ingress_port,
            egress_port=int(env.get("APPMESH_EGRESS_PORT", 15001)),
            app_host=env.get("APPMESH_APP_HOST", "127.0.0.1"),
            listen_address=env.get("APPMESH_LISTEN_ADDRESS", "0.0.0.0"),
            ingress_address=env.get("APPMESH_INGRESS_ADDRESS", f"127.0.0.1:{ingress_port}"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            mesh_owner=mesh_owner,
            xds_credentials=(credentials.access_key, credentials.secret_key, credentials.token),
            drain_seconds=float(env.get("LISTENER_DRAIN_WAIT_TIME_S", 20)),
            log_level=env.get("ENVOY_LOG_LEVEL", "info").lower(),
            observability=ObservabilityConfig.from_environment(env, node_id),
            workers=max(1, int(env.get("ENVOY_CONCURRENCY") or 1)),
            worker_index=int(env.get(WORKER_INDEX_VARIABLE, 0)),
        )

    def node(self) -> dict[str, Any]:
        """The xDS node: identity plus where this proxy listens (its registration)."""
        metadata: dict[str, Any] = {
            "appmesh_local.ingress_port": self.ingress_port,
            "appmesh_local.egress_port": self.egress_port,
            "appmesh_local.app_host": self.app_host,
            "appmesh_local.listen_address": self.listen_address,
            "appmesh_local.ingress_address": self.ingress_address,
            "appmesh_local.region": self.region,
        }
        if self.mesh_owner:
            metadata["appmesh_local.mesh_owner"] = self.mesh_owner
        if self.observability.metrics.extension:  # as App Mesh's image announced it
            metadata["aws.appmesh.metric_filter"] = {"level": "1"}
        return {"id": self.node_id, "cluster": self.node_cluster, "metadata": metadata}


async def run_proxy(settings: ProxySettings, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then drain and exit."""
    from proxy.server import ProxyServer
    from proxy.xds_client import XdsClient

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    node = settings.node()
    # Only the first worker serves the admin port; each worker keeps its own stats.
    admin = (settings.listen_address, settings.admin_port) if settings.worker_index == 0 else None
    server = ProxyServer(
        admin_address=admin,
        node=node,
        observability=settings.observability,
        reuse_port=settings.workers > 1,
    )
    await server.start()
    # Back-off capped at 10 s: a local control plane that restarts is back within seconds,
    # and its proxies should follow it promptly.
    sign = xds_signer(Credentials(*settings.xds_credentials), settings.region)
    client = XdsClient(
        settings.xds_endpoint, node, server.apply, stats=server.stats, backoff_max=10.0, sign=sign
    )
    await client.start()
    log.info(
        "appmesh-proxy for %s: control plane %s, admin :%d, ingress :%d, egress :%d",
        settings.node_id,
        settings.xds_endpoint,
        settings.admin_port,
        settings.ingress_port,
        settings.egress_port,
    )
    await stop.wait()
    log.info("draining for up to %.0f s (LISTENER_DRAIN_WAIT_TIME_S)", settings.drain_seconds)
    await client.stop()
    await server.stop(drain_seconds=settings.drain_seconds)


def _serve(env: Mapping[str, str]) -> int:
    try:
        settings = ProxySettings.from_environment(env)
    except ValueError as exc:
        print(f"appmesh-proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=_LOG_LEVELS.get(settings.log_level, logging.INFO),
        format="[%(asctime)s][%(levelname)s][%(name)s] %(message)s",
    )
    import uvloop

    others = _start_other_workers(settings, env)
    try:
        uvloop.run(run_proxy(settings))
    finally:
        for worker in others:
            worker.terminate()
        for worker in others:
            worker.wait()
    return 0


def _start_other_workers(settings: ProxySettings, env: Mapping[str, str]) -> list:
    """With ENVOY_CONCURRENCY=N the first worker starts N-1 more (same ports, SO_REUSEPORT):
    Python runs one core per process, as Envoy's concurrency runs one per thread."""
    import subprocess

    if settings.worker_index != 0 or settings.workers <= 1:
        return []
    log.info(
        "starting %d more workers (ENVOY_CONCURRENCY=%d)", settings.workers - 1, settings.workers
    )
    command = [sys.executable, "-m", "proxy.main"]
    return [
        subprocess.Popen(command, env={**env, WORKER_INDEX_VARIABLE: str(index)})
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
        description="The appmesh-local sidecar. With no command it runs the proxy, configured "
        "by the same environment variables as App Mesh's Envoy image (APPMESH_RESOURCE_ARN, "
        "APPMESH_XDS_ENDPOINT, ENVOY_ADMIN_ACCESS_PORT, ENVOY_LOG_LEVEL, "
        "LISTENER_DRAIN_WAIT_TIME_S, ENABLE_ENVOY_XRAY_TRACING, APPMESH_METRIC_EXTENSION_VERSION, "
        "ENABLE_ENVOY_DOG_STATSD, ...) plus APPMESH_INGRESS_PORT, APPMESH_EGRESS_PORT, "
        "APPMESH_APP_HOST and APPMESH_INGRESS_ADDRESS.",
    )
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
    args = build_parser().parse_args(argv)
    if args.command == "iptables":
        return _iptables(args.action, os.environ)
    return _serve(os.environ)


if __name__ == "__main__":
    sys.exit(main())
