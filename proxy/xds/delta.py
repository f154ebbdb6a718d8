"""The Delta xDS client: incremental ADS (``DeltaAggregatedResources``) over gRPC.

Used when the bootstrap's ``ads_config.api_type`` is ``DELTA_GRPC``, as Envoy does. One
bidirectional stream to the ADS cluster's address carries every type. Per type URL the
proxy sends a ``DeltaDiscoveryRequest``: listeners and clusters as wildcards (an empty
first request), routes, endpoints and secrets by name, subscribed and unsubscribed as
the listeners and clusters that reference them change (``state.DiscoveryState``
decides which names, this module only says so on the stream). A response carries the
new or changed resources, each with its own version, and ``removed_resources``; the
proxy lays them over what it last accepted, so the config it compiles is the same
complete set the REST client would have, and the same warming, ordering and
unsupported-resource rules apply. Each response is ACKed (its nonce) or NACKed (its
nonce with ``error_detail``) once its verdict is known; a NACKed response leaves the last
good config running.

On reconnect, each type's first request carries ``initial_resource_versions`` (what the
proxy holds, by name and version), so the control plane resends only what changed
meanwhile; appmesh-local's versions are digests of the content, equal across replicas,
so this holds across a failover too. Failover and back-off are ``DiscoveryState``'s: a
stream that fails (refused, reset, ended, or no connection within ``connect_timeout``)
moves to the next replica at once; back-off starts when each has failed in a row.

A replica that goes silent without a reset (a stopped process, a dropped route) is
noticed by HTTP/2 keepalive: after ``keepalive_interval`` (30 s, plus up to 15 %) with
nothing received a PING is sent, and when nothing, not even its ACK, comes back within
``keepalive_timeout`` (10 s) the stream fails and the next replica is tried. The numbers
are the ADS cluster's ``connection_keepalive`` when the bootstrap names one
(``proxy.config.bootstrap``), as Envoy reads them.

The stream is signed as Envoy's ``envoy.grpc_credentials.aws_iam`` call credentials sign
it (``proxy.xds_auth.call_signer``), over TLS when the ADS cluster has a TLS transport
socket (trusting the system's CA bundle, ``SSL_CERT_FILE`` included, as the REST client
does) and in plaintext otherwise. gRPC is spoken over h2 (``proxy.xds.grpc_stream``,
shared with the local SDS agent client), not grpcio; protobuf and Envoy's protos are
loaded here (to turn each resource back into the JSON the proxy compiles), so a sidecar
on REST xDS pays nothing for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

import envoy_bootstrap.validate  # noqa: F401  (registers the Envoy types resources name)
from proxy.config.protojson import ConfigError
from proxy.observe.stats import Stats
from proxy.xds.grpc_stream import INTERNAL, GrpcError, GrpcStream
from proxy.xds.state import (
    KINDS,
    WILDCARD_KINDS,
    Apply,
    DiscoveryState,
    Subscription,
    endpoint_urls,
    resource_name,
)
from proxy.xds_auth import CallSigner

log = logging.getLogger(__name__)

DELTA_ADS_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#: What is sent first on a stream: clusters before listeners, as Envoy does.
ORDER = ("clusters", "listeners", "routes", "endpoints", "secrets")
#: A stream that lived this long counts as a success, whatever ended it.
HEALTHY_SECONDS = 10.0
#: HTTP/2 keepalive when the ADS cluster names no ``connection_keepalive`` (appmesh-local's
#: bootstrap names these): a PING after this long with nothing received...
KEEPALIVE_INTERVAL = 30.0
#: ...and the connection is given up (and the next replica tried) when nothing, not even
#: the PING's ACK, arrives within this long.
KEEPALIVE_TIMEOUT = 10.0
#: ...each interval lengthened by up to this fraction of it at random (Envoy's default
#: ``interval_jitter``, 15 %), so sidecars started together do not ping together.
KEEPALIVE_JITTER = 0.15
Request: TypeAlias = discovery_pb2.DeltaDiscoveryRequest
Response: TypeAlias = discovery_pb2.DeltaDiscoveryResponse


class DeltaClient(DiscoveryState):
    """Keeps a ``ProxyServer`` (through ``apply``) in step over incremental ADS."""

    COUNTERS = (
        "delta.streams",
        "delta.responses",
        "delta.resources_received",
        "delta.resources_removed",
        "delta.bytes_received",
        "delta.nacks",
    )

    def __init__(
        self,
        endpoint: str | Sequence[str],
        node: dict[str, Any],
        apply: Apply,
        *,
        stats: Stats | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        settle_seconds: float = 0.05,
        warm_timeout: float = 5.0,
        sign: CallSigner | None = None,
        connect_timeout: float = 2.0,
        agent_cluster: str = "",
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        keepalive_jitter: float = KEEPALIVE_JITTER,
    ) -> None:
        super().__init__(
            endpoint_urls(endpoint),
            node,
            apply,
            stats=stats,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            settle_seconds=settle_seconds,
            warm_timeout=warm_timeout,
            connect_timeout=connect_timeout,
            agent_cluster=agent_cluster,
        )
        self.sign = sign
        self.keepalive = (keepalive_interval, keepalive_timeout, keepalive_jitter)
        self._node = json_format.ParseDict(node, base_pb2.Node())
        self._runner: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Request] | None = None  # the live stream's, if any
        self.stream: GrpcStream | None = None  # the live stream's call, if any
        self._opened: set[str] = set()  # types that sent their first request on it
        self._answered = False

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, self._applier) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        """One stream at a time; a failed one moves to the next replica, or backs off."""
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            used, began = self.endpoint, loop.time()
            self._answered = False
            try:
                await self._stream(used)
                exc: Exception = ConnectionError("the control plane ended the stream")
            except GrpcError as error:
                exc = ConnectionError(str(error))
            except (OSError, TimeoutError) as error:
                exc = error
            except Exception as error:  # a bug, or a peer h2 trips over: never stop for good
                log.warning("xds: the Delta stream failed unexpectedly", exc_info=True)
                exc = error
            if self._answered or loop.time() - began >= HEALTHY_SECONDS:
                failures = 0
            self._lost("ads", exc)
            failures += 1
            if self._fail_over(used, exc) and failures <= len(self.endpoints):
                continue  # another replica, at once: back-off is for when all failed
            await asyncio.sleep(self._backoff(failures))

    # -- one stream -------------------------------------------------------------------------
    async def _stream(self, endpoint: str) -> None:
        stream = self.stream = await self._connect(endpoint)
        workers: dict[str, tuple[asyncio.Queue[Response], asyncio.Task[None]]] = {}
        writer: asyncio.Task[None] | None = None
        try:
            self.counters["delta.streams"] += 1
            self._reached(answered=False)
            stream.keepalive(*self.keepalive)
            outbox: asyncio.Queue[Request] = asyncio.Queue()
            writer = asyncio.get_running_loop().create_task(_write(stream, outbox))
            self._outbox, self._opened = outbox, set()
            for kind in ORDER:
                if kind in WILDCARD_KINDS or self.subs[kind].names:
                    self._open(self.subs[kind])
            for kind in KINDS:
                queue: asyncio.Queue[Response] = asyncio.Queue()
                task = asyncio.get_running_loop().create_task(self._work(self.subs[kind], queue))
                workers[self.subs[kind].type_url] = (queue, task)
            while (message := await stream.read()) is not None:
                response = _response(message)
                if not self._answered:
                    self._answered = True
                    self._reached()
                self._count(response, len(message))
                queue_task = workers.get(response.type_url)
                if queue_task is None:
                    self._send(_verdict(response.type_url, response.nonce, _unknown(response)))
                    continue
                queue_task[0].put_nowait(response)
        finally:
            self._outbox = self.stream = None
            tasks = [task for _, task in workers.values()] + ([writer] if writer else [])
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            stream.close()

    async def _connect(self, endpoint: str) -> GrpcStream:
        """The stream's connection and call, signed for the authority it names, within
        ``connect_timeout`` (TCP, TLS and the server's HTTP/2 SETTINGS)."""
        parts = urlsplit(endpoint)
        secure, authority = parts.scheme == "https", parts.netloc
        default = 443 if secure else 80
        metadata = self.sign(authority, DELTA_ADS_PATH) if self.sign else []
        return await GrpcStream.open_tcp(
            parts.hostname or "127.0.0.1",
            parts.port or default,
            DELTA_ADS_PATH,
            authority=authority,
            tls=ssl.create_default_context() if secure else None,
            metadata=metadata,
            timeout=self.connect_timeout,
        )

    def _open(self, sub: Subscription) -> None:
        """A type's first request on this stream: its names (none: the wildcard) and,
        after a reconnect, what the proxy holds of it."""
        request = Request(
            type_url=sub.type_url,
            resource_names_subscribe=list(sub.names),
            initial_resource_versions=sub.versions,
        )
        if not self._opened:
            request.node.CopyFrom(self._node)
        self._opened.add(sub.kind)
        self._send(request)

    def _send(self, request: Request) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(request)

    def _count(self, response: Response, size: int) -> None:
        self.counters["delta.responses"] += 1
        self.counters["delta.resources_received"] += len(response.resources)
        self.counters["delta.resources_removed"] += len(response.removed_resources)
        self.counters["delta.bytes_received"] += size

    # -- one type ---------------------------------------------------------------------------
    async def _work(self, sub: Subscription, queue: asyncio.Queue[Response]) -> None:
        """A type's responses in order, each staged and answered before the next."""
        while True:
            response = await queue.get()
            error = await self._handle(sub, response)
            if error is not None:
                self.counters["delta.nacks"] += 1
            self._send(_verdict(sub.type_url, response.nonce, error))

    async def _handle(self, sub: Subscription, response: Response) -> dict[str, Any] | None:
        """Lay the response over what was accepted, stage it, and return the NACK's
        ``error_detail`` (``None``: ACK)."""
        try:
            changed = [(*_decoded(sub, item), item.version) for item in response.resources]
        except (ConfigError, json_format.Error) as exc:
            log.warning("xds: rejecting %s: %s", sub.kind, exc)
            return {"code": 3, "message": str(exc)}
        resources, versions = dict(sub.resources), dict(sub.versions)
        for name in response.removed_resources:
            resources.pop(name, None)
            versions.pop(name, None)
        for name, resource, version in changed:
            resources[name], versions[name] = resource, version
        sub.pending_versions = versions
        answered = {name for name, _, _ in changed} | set(response.removed_resources)
        await self._stage(sub, response.system_version_info, response.nonce, resources, answered)
        error, sub.error = sub.error, None
        return error

    def _names_changed(self, sub: Subscription, added: set[str], removed: set[str]) -> None:
        """Subscribe and unsubscribe on the stream; what is no longer referenced is
        forgotten here (the control plane sends no removal for an unsubscribed name)."""
        for name in removed:
            sub.resources.pop(name, None)
            sub.versions.pop(name, None)
            if sub.staged is not None:
                sub.staged[2].pop(name, None)
        if self._outbox is None:
            return  # the next stream opens the type with its names
        if sub.kind not in self._opened:
            self._open(sub)
            return
        self._send(
            Request(
                type_url=sub.type_url,
                resource_names_subscribe=sorted(added),
                resource_names_unsubscribe=sorted(removed),
            )
        )


async def _write(stream: GrpcStream, outbox: asyncio.Queue[Request]) -> None:
    """The stream's requests, as they are queued; a failure to send ends the stream."""
    try:
        while True:
            await stream.send((await outbox.get()).SerializeToString())
    except (GrpcError, OSError) as exc:
        stream.abort(exc)


def _response(message: bytes) -> Response:
    try:
        return Response.FromString(message)
    except DecodeError as exc:
        raise GrpcError(INTERNAL, f"a DeltaDiscoveryResponse that does not decode: {exc}") from exc


def _decoded(sub: Subscription, item: discovery_pb2.Resource) -> tuple[str, dict[str, Any]]:
    """One ``Resource`` as the JSON the proxy compiles (``@type`` and field names as
    Envoy's protos spell them), with the name it is known by."""
    if item.resource.type_url != sub.type_url:
        raise ConfigError(f"{sub.kind}: unexpected resource type {item.resource.type_url!r}")
    resource = json_format.MessageToDict(item.resource, preserving_proto_field_name=True)
    name = resource_name(sub, resource)
    if item.name and item.name != name:
        raise ConfigError(f"{sub.kind}: resource {item.name!r} names itself {name!r}")
    return name, resource


def _unknown(response: Response) -> dict[str, Any]:
    return {"code": 3, "message": f"type_url {response.type_url!r} was not subscribed to"}


def _verdict(type_url: str, nonce: str, error: dict[str, Any] | None) -> Request:
    """An ACK of ``nonce``, or its NACK with ``error``."""
    request = Request(type_url=type_url, response_nonce=nonce)
    if error is not None:
        request.error_detail.code, request.error_detail.message = error["code"], error["message"]
    return request
