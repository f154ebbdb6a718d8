"""Active health checks (HTTP and TCP) with Envoy's healthy/unhealthy thresholds.

One task per cluster checks every host each ``interval`` (plus jitter). A host flips to
unhealthy after ``unhealthy_threshold`` consecutive failures and back after
``healthy_threshold`` consecutive passes; a newly added host needs a single pass, as in
Envoy. The first round is exposed as ``first_round`` so a new cluster can warm up before
it takes traffic. gRPC health checks are not implemented yet: they fall back to a TCP
connect check.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config.cluster import HealthCheckConfig
    from proxy.upstream.host import ClusterView, Host


class HealthChecker:
    def __init__(self, cluster: ClusterView, config: HealthCheckConfig) -> None:
        self.cluster = cluster
        self.config = config
        loop = asyncio.get_running_loop()
        self.first_round: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        config = self.config
        while True:
            hosts = list(self.cluster.hosts.values())
            results = await asyncio.gather(*(self._check(host) for host in hosts))
            for host, passed in zip(hosts, results, strict=True):
                self._record(host, passed)
            if not self.first_round.done():
                self.first_round.set_result(None)
            await asyncio.sleep(config.interval + random.random() * config.interval_jitter)

    async def _check(self, host: Host) -> bool:
        counters = self.cluster.stats.counters
        counters["health_check.attempt"] += 1
        port = host.endpoint.health_check_port or host.port
        try:
            async with asyncio.timeout(self.config.timeout):
                passed = await self._probe(host.host, port)
        except (OSError, TimeoutError, EOFError, ValueError):
            counters["health_check.network_failure"] += 1
            passed = False
        counters["health_check.success" if passed else "health_check.failure"] += 1
        return passed

    async def _probe(self, address: str, port: int) -> bool:
        reader, writer = await asyncio.open_connection(address, port)
        try:
            if self.config.kind == "http":
                return await self._http(reader, writer)
            return await self._tcp(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        config = self.config
        host = config.host or self.cluster.name
        writer.write(
            f"GET {config.path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: Envoy/HC\r\n"
            "connection: close\r\n\r\n".encode("latin-1")
        )
        status_line = await reader.readline()
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False
        status = int(parts[1])
        return any(start <= status < end for start, end in config.expected_statuses)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        config = self.config
        if config.send:
            writer.write(config.send)
        expected = b"".join(config.receive)
        if not expected:
            return True
        received = await reader.readexactly(len(expected))
        return received == expected

    def _record(self, host: Host, passed: bool) -> None:
        config, changed = self.config, False
        if passed:
            host.hc_streak = host.hc_streak + 1 if host.hc_streak > 0 else 1
            if host.hc_failed and (host.hc_streak >= config.healthy_threshold or host.hc_initial):
                host.hc_failed = False
                changed = True
        else:
            host.hc_streak = host.hc_streak - 1 if host.hc_streak < 0 else -1
            if not host.hc_failed and -host.hc_streak >= config.unhealthy_threshold:
                host.hc_failed = True
                changed = True
        host.hc_initial = False
        if changed:
            self.cluster.refresh()

    def stop(self) -> None:
        self._task.cancel()
        if not self.first_round.done():
            self.first_round.set_result(None)
