"""Circuit breakers, outlier detection and active health checks of clusters.

Where each applies (App Mesh UG and aws-app-mesh-examples):
- A listener's ``connectionPool`` protects the local application: it becomes the circuit
  breaker of the proxy's own ingress cluster (or, on a gateway, of its self-redirect
  cluster) — walkthrough howto-k8s-connection-pools. Unset limits are 2147483647, App
  Mesh's value for every account created since 2020-07-29 (UG envoy-defaults).
- A listener's ``outlierDetection`` and ``healthCheck`` describe how *clients* judge the
  node's hosts: they are configured on every client's egress cluster for that listener.
  App Mesh's roadmap#105 ("downstream (client) Envoys will perform active health
  checking") and the UG metrics example (``cluster.cds_egress_..._http_3000.health_check
  .failure``) both show the checks on the client side, passed through to the application.
"""

from __future__ import annotations

from typing import Any

from envoy_bootstrap import durations
from envoy_bootstrap.snapshot import Spec

UNLIMITED = 2147483647
GRPC_HEALTH_PATH = "/grpc.health.v1.Health/Check"


def circuit_breakers(pool: Spec | None = None) -> dict[str, Any]:
    """Default-priority thresholds from a listener connection pool union."""
    thresholds = {
        "max_connections": UNLIMITED,
        "max_pending_requests": UNLIMITED,
        "max_requests": UNLIMITED,
        "max_retries": UNLIMITED,
    }
    pool = pool or {}
    if "http" in pool:
        thresholds["max_connections"] = pool["http"]["maxConnections"]
        thresholds["max_pending_requests"] = pool["http"].get("maxPendingRequests", UNLIMITED)
    for protocol in ("http2", "grpc"):
        if protocol in pool:
            thresholds["max_requests"] = pool[protocol]["maxRequests"]
    if "tcp" in pool:
        thresholds["max_connections"] = pool["tcp"]["maxConnections"]
    return {"thresholds": [thresholds]}


def outlier_detection(detection: Spec) -> dict[str, Any]:
    """Eject a host after ``maxServerErrors`` consecutive 5xx, checked every ``interval``,
    for ``baseEjectionDuration``, at most ``maxEjectionPercent`` of hosts but always at
    least one (UG). App Mesh exposes only this detector, so Envoy's success-rate detector
    (on by default) is switched off (UNCONFIRMED that App Mesh did the same)."""
    return {
        "consecutive_5xx": int(detection["maxServerErrors"]),
        "interval": durations.from_appmesh(detection["interval"]),
        "base_ejection_time": durations.from_appmesh(detection["baseEjectionDuration"]),
        "max_ejection_percent": int(detection["maxEjectionPercent"]),
        "enforcing_consecutive_5xx": 100,
        "enforcing_success_rate": 0,
        "always_eject_one_host": True,
    }


def health_check(check: Spec) -> dict[str, Any]:
    """An active health check. ``path`` is used for http and http2 only; grpc uses the
    gRPC Health Checking Protocol; tcp only connects."""
    result: dict[str, Any] = {
        "timeout": durations.from_millis(check["timeoutMillis"]),
        "interval": durations.from_millis(check["intervalMillis"]),
        "unhealthy_threshold": int(check["unhealthyThreshold"]),
        "healthy_threshold": int(check["healthyThreshold"]),
    }
    protocol = check.get("protocol", "http")
    if protocol in ("http", "http2"):
        codec = "HTTP2" if protocol == "http2" else "HTTP1"
        result["http_health_check"] = {"path": check.get("path") or "/", "codec_client_type": codec}
    elif protocol == "grpc":
        result["grpc_health_check"] = {}
    else:
        result["tcp_health_check"] = {}
    return result
