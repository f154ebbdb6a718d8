"""An X-Ray daemon: UDP segments in, batched PutTraceSegments out, sampling calls proxied.

It speaks what AWS's daemon speaks, so the X-Ray SDKs and Envoy's X-Ray tracer need no
change:

- UDP: one datagram per segment or subsegment, ``{"format":"json","version":1}\\n<json>``
  (the header may carry spaces). Documents are batched, 50 a call or whatever a second
  collected, into PutTraceSegments, as the AWS daemon does. A failed call is retried twice,
  then dropped with a warning (the SDKs' sends are fire-and-forget too); at most 10,000
  documents wait, the oldest dropped first;
- TCP, on the same port: an HTTP proxy for the SDKs' centralized sampling
  (``POST /GetSamplingRules``, ``POST /SamplingTargets``) and any other X-Ray call, signed
  on the way out (the SDKs send them unsigned, relying on the daemon's credentials).

``appmesh-local serve`` runs one on 127.0.0.1:2000 feeding its own store;
``appmesh-local xray-daemon`` runs one on its own, sending to any endpoint.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import signal
from typing import Any

from aiohttp import web

from appmesh_api.settings import Settings
from appmesh_api.xray.api import XRayService
from appmesh_api.xray.destinations import (
    Destination,
    HttpDestination,
    LocalDestination,
    environment_region,
    local_account,
    put_segments,
)

log = logging.getLogger("appmesh_local.xray.daemon")

BATCH_SIZE = 50
FLUSH_INTERVAL = 1.0
MAX_QUEUED = 10_000
_RETRY_DELAYS = (0.2, 1.0)


def parse_datagram(data: bytes) -> str | None:
    """The JSON document of one daemon datagram, or None when it is not one."""
    header, newline, body = data.partition(b"\n")
    if not newline:
        return None
    try:
        meta = json.loads(header)
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("format") != "json" or meta.get("version") != 1:
        return None
    text = body.decode("utf-8", "replace").strip()
    return text or None


class SegmentBatcher:
    """Collects documents and sends them in batches from one background task."""

    def __init__(self, destination: Destination, interval: float = FLUSH_INTERVAL) -> None:
        self.destination = destination
        self.interval = interval
        self.queue: collections.deque[str] = collections.deque(maxlen=MAX_QUEUED)
        self.sent = self.dropped = 0
        self._wake = asyncio.Event()

    def add(self, document: str) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(document)
        if len(self.queue) >= BATCH_SIZE:
            self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(BATCH_SIZE, len(self.queue)))]
            await self._send(batch)

    async def _send(self, batch: list[str]) -> None:
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                unprocessed = await put_segments(self.destination, batch)
            except Exception as exc:  # network, signing, a non-200 answer
                if delay is None:
                    self.dropped += len(batch)
                    log.warning(
                        "dropped %d segments after %d tries: %s", len(batch), attempt + 1, exc
                    )
                    return
                await asyncio.sleep(delay)
                continue
            self.sent += len(batch) - len(unprocessed)
            for bad in unprocessed:
                log.warning(
                    "segment %s rejected: %s %s",
                    bad.get("Id"),
                    bad.get("ErrorCode"),
                    bad.get("Message"),
                )
            return


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, batcher: SegmentBatcher) -> None:
        self.batcher = batcher

    def datagram_received(self, data: bytes, addr: Any) -> None:
        document = parse_datagram(data)
        if document is None:
            log.debug("ignored a datagram from %s that is not X-Ray's format", addr)
            return
        self.batcher.add(document)


def _proxy_app(destination: Destination) -> web.Application:
    """The TCP side: every request is relayed to the destination as an X-Ray call."""

    async def relay(request: web.Request) -> web.Response:
        body = await request.read()
        status, headers, payload = await destination.call(request.path, body)
        log.debug("sampling proxy %s -> %s", request.path, status)
        return web.Response(status=status, body=payload, headers=headers)

    app = web.Application()
    app.router.add_route("POST", "/{path:.*}", relay)
    return app


class XRayDaemon:
    """The UDP listener, the batcher and the TCP proxy on one host:port."""

    def __init__(self, destination: Destination, interval: float = FLUSH_INTERVAL) -> None:
        self.destination = destination
        self.batcher = SegmentBatcher(destination, interval)
        self._transport: asyncio.DatagramTransport | None = None
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind UDP and TCP (OSError when the port is taken) and start sending."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self.batcher), local_addr=(host, port)
        )
        try:
            self._runner = web.AppRunner(_proxy_app(self.destination), access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, host, port).start()
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self.batcher.run())

    async def stop(self) -> None:
        """Stop listening, send what is queued, close the destination."""
        if self._transport is not None:
            self._transport.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.batcher.flush()
        await self.destination.close()


async def start_embedded(settings: Settings, service: XRayService | None) -> XRayDaemon | None:
    """The daemon ``serve`` runs: into this server's store, or to ``--aws-endpoint``.

    A port that is taken (say, by a real X-Ray daemon) costs a warning, not the server.
    """
    region = environment_region()
    if service is not None:
        destination: Destination = LocalDestination(service, local_account(settings), region)
    else:
        destination = HttpDestination(settings.aws_endpoint or "", region)
    daemon = XRayDaemon(destination)
    try:
        await daemon.start(settings.xray_daemon_host, settings.xray_daemon_port)
    except OSError as exc:
        log.warning(
            "X-Ray daemon not started on %s:%s: %s (use --xray-daemon-port to move it)",
            settings.xray_daemon_host,
            settings.xray_daemon_port,
            exc,
        )
        return None
    return daemon


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``port`` (host 127.0.0.1); ``[::1]:2000`` for IPv6."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--bind must look like 127.0.0.1:2000, got {text!r}")
    return host, int(port)


async def serve_forever(host: str, port: int, endpoint: str, region: str) -> None:
    """Run a standalone daemon until SIGINT or SIGTERM."""
    daemon = XRayDaemon(HttpDestination(endpoint, region))
    await daemon.start(host, port)
    print(
        f"appmesh-local: X-Ray daemon on udp+tcp {host}:{port} -> {endpoint} ({region})", flush=True
    )
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await daemon.stop()
