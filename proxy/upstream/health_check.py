"""Active health checks (HTTP and TCP) with Envoy's healthy/unhealthy thresholds.

One task per cluster checks every host each ``interval`` (plus jitter). A host flips to
unhealthy after ``unhealthy_threshold`` consecutive failures and back after
``healthy_threshold`` consecutive passes; a newly added host needs a single pass, as in
Envoy. The first round is exposed as ``first_round`` so a new cluster can warm up before
it takes traffic. HTTP checks speak HTTP/1.1, or HTTP/2 with prior knowledge when the
check's codec is HTTP2; gRPC checks call ``grpc.health.v1.Health/Check`` over HTTP/2
and pass only on ``grpc-status: 0`` with a SERVING answer, as Envoy's do.

Checks use the cluster's transport socket, as Envoy's do: toward a TLS cluster every
check connection is a TLS (or mutual TLS) handshake with the cluster's context (trust,
SANs, client certificate, SNI, ALPN), counted in the cluster's ``ssl.*`` stats, and a
failed handshake is a failed check (``health_check.network_failure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING

from proxy.upstream import tls

if TYPE_CHECKING:
    from proxy.config.cluster import HealthCheckConfig
    from proxy.config.tls import ClientTls
    from proxy.upstream.host import ClusterView, Host


GRPC_HEALTH_PATH = "/grpc.health.v1.Health/Check"


async def _open(
    address: str, port: int, secure: ClientTls | None, cluster: ClusterView
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A check connection: plain TCP, or TLS with the cluster's context."""
    if secure is None:
        return await asyncio.open_connection(address, port)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, protocol = await tls.connect(
        lambda: asyncio.StreamReaderProtocol(reader), address, port, secure, cluster.stats
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _h2_exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: list[tuple[str, str]],
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request over a new HTTP/2 (prior knowledge) connection: the response status,
    its headers and trailers in one dict, and the body. A protocol error is a
    ``ValueError``. h2 is imported here: only gRPC health checks need it."""
    import h2.exceptions

    try:
        return await _h2_request(reader, writer, head, body)
    except h2.exceptions.ProtocolError as exc:
        raise ValueError(f"HTTP/2 health check: {exc}") from exc


async def _h2_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: list[tuple[str, str]],
    body: bytes,
) -> tuple[int, dict[str, str], bytes]:
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="latin-1")
    )
    conn.initiate_connection()
    conn.send_headers(1, head, end_stream=not body)
    if body:
        conn.send_data(1, body, end_stream=True)
    writer.write(conn.data_to_send())
    status, data = 0, b""
    fields: dict[str, str] = {}
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise EOFError("the host closed the HTTP/2 health check connection")
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                fields.update((str(n), str(v)) for n, v in event.headers or ())
                status = int(fields.get(":status", status or 0))
            elif isinstance(event, h2.events.DataReceived):
                data += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                return status, fields, data
        writer.write(conn.data_to_send())


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
        reader, writer = await _open(address, port, self.cluster.config.tls, self.cluster)
        try:
            config = self.config
            if config.kind == "grpc":
                return await self._grpc(reader, writer)
            if config.kind == "http" and config.http2:
                status, _, _ = await _h2_exchange(reader, writer, self._h2_head("GET", config.path))
                return any(start <= status < end for start, end in config.expected_statuses)
            if config.kind == "http":
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

    def _h2_head(self, method: str, path: str) -> list[tuple[str, str]]:
        authority = self.config.host or self.cluster.name
        scheme = "http" if self.cluster.config.tls is None else "https"
        return [(":method", method), (":scheme", scheme), (":authority", authority),
                (":path", path), ("user-agent", "Envoy/HC")]  # fmt: skip

    async def _grpc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = self._h2_head("POST", GRPC_HEALTH_PATH)
        head += [("content-type", "application/grpc"), ("te", "trailers")]
        service = self.config.service_name.encode()
        message = (b"\x0a" + bytes([len(service)]) + service) if service else b""
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        status, fields, data = await _h2_exchange(reader, writer, head, body)
        # HealthCheckResponse{status: SERVING} is field 1 = 1: bytes 08 01 after the prefix.
        return status == 200 and fields.get("grpc-status") == "0" and data[5:7] == b"\x08\x01"

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
