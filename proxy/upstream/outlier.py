"""Outlier detection: eject hosts after consecutive server errors, bring them back later.

As in Envoy (without ``split_external_local_origin_errors``), every attempt result
counts: 5xx responses, connect failures and resets (as 503) and timeouts (as 504).
Ejection happens at the moment the ``consecutive_5xx`` (or enforced
``consecutive_gateway_failure``) threshold is hit, unless ``max_ejection_percent`` of the
cluster is already ejected — though one host can always be ejected. Every ``interval`` a
sweep returns hosts whose ejection time has passed (``base_ejection_time`` times the
number of ejections, capped by ``max_ejection_time``) and lowers the multiplier of hosts
that stayed in. Ejections and their reversals are written as Envoy's
``OutlierDetectionEvent`` JSON lines to the bootstrap's
``cluster_manager.outlier_detection.event_log_path`` when one is named.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config.cluster import OutlierConfig
    from proxy.upstream.host import ClusterView, Host

_GATEWAY = (502, 503, 504)
EventLog = Callable[[str], None]
_EVENT_TYPES = {
    "consecutive_5xx": "CONSECUTIVE_5XX",
    "consecutive_gateway_failure": "CONSECUTIVE_GATEWAY_FAILURE",
}


class OutlierDetector:
    """Per-cluster detector; one loop timer per cluster, nothing per request but counters."""

    def __init__(
        self, cluster: ClusterView, config: OutlierConfig, events: EventLog | None = None
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.events = events
        self._kinds: dict[str, str] = {}  # host key -> its last ejection's kind
        self._actions: dict[str, float] = {}  # host key -> wall time of its last action
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(
            config.interval, self._sweep
        )

    def report(self, host: Host, status: int) -> None:
        """Record one attempt result on ``host`` (an HTTP status or 503/504 for local errors)."""
        if status < 500:
            host.consecutive_5xx = 0
            host.consecutive_gateway = 0
            return
        host.consecutive_5xx += 1
        host.consecutive_gateway = host.consecutive_gateway + 1 if status in _GATEWAY else 0
        if host.ejected:
            return
        config, counters = self.config, self.cluster.stats.counters
        if config.consecutive_5xx and host.consecutive_5xx >= config.consecutive_5xx:
            counters["outlier_detection.ejections_detected_consecutive_5xx"] += 1
            if _enforced(config.enforcing_consecutive_5xx):
                self._eject(host, "consecutive_5xx")
        elif (
            config.consecutive_gateway_failure
            and host.consecutive_gateway >= config.consecutive_gateway_failure
        ):
            counters["outlier_detection.ejections_detected_consecutive_gateway_failure"] += 1
            if _enforced(config.enforcing_consecutive_gateway_failure):
                self._eject(host, "consecutive_gateway_failure")

    def _eject(self, host: Host, kind: str) -> None:
        hosts = self.cluster.hosts.values()
        ejected = sum(h.ejected for h in hosts)
        counters = self.cluster.stats.counters
        if ejected and 100.0 * ejected / max(len(hosts), 1) >= self.config.max_ejection_percent:
            counters["outlier_detection.ejections_overflow"] += 1
            return
        host.ejected = True
        host.ejection_count += 1
        host.ejected_at = self._loop.time()
        host.consecutive_5xx = host.consecutive_gateway = 0
        counters["outlier_detection.ejections_enforced_total"] += 1
        counters["outlier_detection.ejections_total"] += 1
        counters[f"outlier_detection.ejections_enforced_{kind}"] += 1
        self._kinds[host.key] = kind
        self._log(host, "EJECT")
        self.cluster.refresh()

    def _log(self, host: Host, action: str) -> None:
        """One event line, shaped as Envoy's ``envoy.data.cluster.v3.OutlierDetectionEvent``."""
        if self.events is None:
            return
        now = time.time()
        last = self._actions.get(host.key)
        self._actions[host.key] = now
        event: dict[str, object] = {
            "type": _EVENT_TYPES[self._kinds.get(host.key, "consecutive_5xx")],
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}Z",
            "secs_since_last_action": str(int(now - last)) if last is not None else "-1",
            "cluster_name": self.cluster.name,
            "upstream_url": host.key,
            "action": action,
            "num_ejections": host.ejection_count,
            "enforced": action == "EJECT",
        }
        if action == "EJECT":
            event["eject_consecutive_event"] = {}
        self.events(json.dumps(event, separators=(",", ":")) + "\n")

    def _sweep(self) -> None:
        now, config, changed = self._loop.time(), self.config, False
        for host in self.cluster.hosts.values():
            if host.ejected:
                duration = min(
                    config.base_ejection_time * host.ejection_count, config.max_ejection_time
                )
                if now >= host.ejected_at + duration:
                    host.ejected = False
                    changed = True
                    self._log(host, "UNEJECT")
            elif host.ejection_count:
                host.ejection_count -= 1
        if changed:
            self.cluster.refresh()
        self._handle = self._loop.call_later(config.interval, self._sweep)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for host in self.cluster.hosts.values():
            if host.ejected:
                host.ejected = False
        self.cluster.refresh()


def _enforced(percentage: int) -> bool:
    return percentage >= 100 or random.randrange(100) < percentage
