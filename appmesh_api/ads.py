"""gRPC ADS: the same discovery service for a real Envoy.

App Mesh's Envoy image speaks Aggregated Discovery over gRPC (reference §3), and
the listeners and clusters we generate name ADS as their config source, as App
Mesh's did. This server answers ``StreamAggregatedResources`` from the very
snapshots the REST endpoint serves: a stream subscribes per type URL, gets a
response whenever its mesh's version moves, ACKs or NACKs by nonce, and a NACKed
version is never resent. Errors close the stream with App Mesh's gRPC codes
(3 invalid argument, 5 not found, 7 permission denied, 8 too many Envoys).

It listens in plaintext (``--xds-port``) and, for App Mesh's own Envoy image, which
reached its management server only over TLS, on ``--xds-tls-port`` (``adstls``); with
``--verify-signatures`` each stream's ``aws_iam`` signature is verified (``adsauth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, json_format

from appmesh_api.ads_delta import DeltaStream
from appmesh_api.adsauth import ADS_PATH, DELTA_ADS_PATH, authorities, verify_call
from appmesh_api.adstls import AdsCertificate, local_names
from appmesh_api.discovery import TYPE_URLS, DiscoveryService, ResolvedNode, XdsError
from appmesh_api.frontdoor.refusals import Refusal
from appmesh_api.frontdoor.signatures import Secret
from appmesh_api.identity import account_of, parse_credential_scope, signing_secret
from appmesh_api.settings import Settings
from envoy_bootstrap.validate import parse_resource

log = logging.getLogger("appmesh_local.ads")

TYPE_NAMES = {url: name for name, url in TYPE_URLS.items()}
_STATUS = {
    3: grpc.StatusCode.INVALID_ARGUMENT,
    5: grpc.StatusCode.NOT_FOUND,
    7: grpc.StatusCode.PERMISSION_DENIED,
    8: grpc.StatusCode.RESOURCE_EXHAUSTED,
    13: grpc.StatusCode.INTERNAL,
}
XDS_UNSIGNED = (
    "xDS requests must carry a SigV4 authorization of the node's own account, as App Mesh's "
    "did (appmesh:StreamAggregatedResources on the node's ARN); appmesh-proxy and "
    "`appmesh-local bootstrap` add one"
)
#: How long a stream waits between checks of its mesh version when nothing changes.
WATCH_SECONDS = 30.0


def to_proto(response: dict[str, Any]) -> discovery_pb2.DiscoveryResponse:
    """Pack a JSON DiscoveryResponse into the protobuf one, checking every resource
    against Envoy's schema on the way (an unknown field raises)."""
    packed = []
    for resource in response["resources"]:
        wrapper = any_pb2.Any()
        wrapper.Pack(parse_resource(resource))
        packed.append(wrapper)
    return discovery_pb2.DiscoveryResponse(
        version_info=response["version_info"],
        resources=packed,
        type_url=response["type_url"],
        nonce=response["nonce"],
    )


class _Stream:
    """One Envoy's ADS stream: its node, and per type what it asked for and was sent."""

    def __init__(self, discovery: DiscoveryService, account: str) -> None:
        self.discovery = discovery
        self.account = account  # from the stream's SigV4 credential scope
        self.node: ResolvedNode | None = None
        self.node_json: dict[str, Any] = {}
        self.subscribed: dict[str, list[str]] = {}  # type name -> resource names
        self.sent: dict[str, str] = {}  # type name -> version last sent
        self.outbox: asyncio.Queue[discovery_pb2.DiscoveryResponse | XdsError] = asyncio.Queue()

    def handle(self, request: discovery_pb2.DiscoveryRequest) -> None:
        if request.HasField("node"):
            self.node_json = json_format.MessageToDict(
                request.node, preserving_proto_field_name=True
            )
        type_name = TYPE_NAMES.get(request.type_url)
        if type_name is None:
            raise XdsError(400, 3, f"unsupported type_url {request.type_url!r}")
        as_json = {
            "node": self.node_json,
            "type_url": request.type_url,
            "version_info": request.version_info,
            "response_nonce": request.response_nonce,
            "resource_names": list(request.resource_names),
        }
        if request.HasField("error_detail"):
            as_json["error_detail"] = {
                "code": request.error_detail.code,
                "message": request.error_detail.message,
            }
        self.node = self.discovery.register(as_json, self.account)
        names = list(request.resource_names)
        is_reply = bool(request.response_nonce) and request.response_nonce == self.sent.get(
            type_name
        )
        changed_names = names != self.subscribed.get(type_name)
        self.subscribed[type_name] = names
        if not is_reply or changed_names:
            self.push(type_name, force=changed_names)

    def push(self, type_name: str, force: bool = False) -> None:
        assert self.node is not None
        # Packed once per node version and names, shared by every stream of the node.
        response = self.discovery.encoded(
            self.node, type_name, self.subscribed[type_name], to_proto
        )
        if force or self.sent.get(type_name) != response.version_info:
            self.sent[type_name] = response.version_info
            self.outbox.put_nowait(response)

    async def watch(self) -> None:
        """Push every subscribed type whenever the node's config version moves: only
        changes the node depends on wake this stream (``node_watch``)."""
        while self.node is None:
            await asyncio.sleep(0.05)
        seen = -1
        while True:
            try:
                current = self.discovery.node_version(self.node)
                if current == seen:
                    current = await self.discovery.wait_node(self.node, WATCH_SECONDS)
                if self.discovery.feed.closed:
                    return
                seen = current
                for type_name in list(self.subscribed):
                    self.push(type_name)
            except XdsError as error:
                self.outbox.put_nowait(error)
                return


class AggregatedDiscovery(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """The ADS servicer over a DiscoveryService.

    ``hosts`` are the authorities a signed call may have been made to (``adsauth``).
    """

    def __init__(
        self, discovery: DiscoveryService, settings: Settings, hosts: Sequence[str] = ()
    ) -> None:
        self.discovery = discovery
        self.settings = settings
        self.hosts = tuple(hosts)

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        async for item in self._serve(_Stream, request_iterator, context):
            yield item

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        """Incremental ADS (``ads_delta``): only the resources that changed."""
        async for item in self._serve(DeltaStream, request_iterator, context):
            yield item

    async def _serve(
        self, kind: type[_Stream] | type[DeltaStream], request_iterator: AsyncIterator, context
    ) -> AsyncIterator[Any]:
        """Authenticate the call, then run its reader and watcher and yield its outbox."""
        path = DELTA_ADS_PATH if kind is DeltaStream else ADS_PATH
        account = self._account(dict(context.invocation_metadata() or ()), path)
        if isinstance(account, XdsError):
            log.info("refusing ADS stream: %s", account.message)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, account.message)
            return
        stream = kind(self.discovery, account)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    stream.handle(request)
            except XdsError as error:
                stream.outbox.put_nowait(error)

        reader = asyncio.create_task(read())
        watcher = asyncio.create_task(stream.watch())
        try:
            while True:
                item = await stream.outbox.get()
                if isinstance(item, XdsError):
                    log.info("closing ADS stream: %s", item.message)
                    await context.abort(
                        _STATUS.get(item.code, grpc.StatusCode.UNKNOWN), item.message
                    )
                yield item
        finally:
            for task in (reader, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _account(self, metadata: dict[str, Any], path: str = ADS_PATH) -> str | XdsError:
        """The stream's account, from the SigV4 ``authorization`` metadata of the call.

        App Mesh's Envoy signed its stream (the ``aws_iam`` call credentials); a stream
        without a credential scope is refused before any request is read. Under
        ``--verify-signatures`` the signature must hold for the call (``adsauth``), with
        the credentials the front door checks API calls with.
        """
        scope = parse_credential_scope(metadata.get("authorization"))
        if scope is None:
            return XdsError(403, 7, XDS_UNSIGNED)
        if self.settings.verify_signatures:
            try:
                verify_call(metadata, self.hosts, self._secret_for, path=path)
            except Refusal as refusal:
                return XdsError(403, 7, f"{refusal.codes[0]}: {refusal.message}")
        return account_of(scope.access_key, self.settings)

    def _secret_for(self, access_key: str) -> str | Secret | None:
        return signing_secret(access_key, self.settings)


def ads_hosts(settings: Settings, certificate: AdsCertificate | None) -> tuple[str, ...]:
    """The authorities a signed ADS call may name: this machine's names, the certificate's
    and ``--xds-tls-name``'s, at the ADS ports (or bare, for port 443)."""
    names = local_names(settings.xds_host, settings.xds_tls_names)
    if certificate is not None:
        names += certificate.names
    ports = (settings.xds_port, settings.xds_tls_port)
    return authorities([*names, *settings.xds_tls_names], ports)


#: HTTP/2 PINGs are answered at any rate: appmesh-proxy pings after 30 s of silence on
#: its Delta stream (and an Envoy may be given ``connection_keepalive``), while grpcio's
#: default lets a client ping once per 5 minutes without data and sends GOAWAY
#: ``too_many_pings`` on the third that comes sooner, which would end a quiet stream.
_KEEPALIVE_POLICY = [
    ("grpc.http2.max_ping_strikes", 0),  # 0: never GOAWAY for pings
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


async def start_ads_server(
    discovery: DiscoveryService, settings: Settings, certificate: AdsCertificate | None = None
) -> grpc.aio.Server:
    """Start gRPC ADS in the running event loop: plaintext on ``--xds-port`` and, with a
    certificate, TLS on ``--xds-tls-port`` (either may be 0, off)."""
    server = grpc.aio.server(options=_KEEPALIVE_POLICY)
    servicer = AggregatedDiscovery(discovery, settings, ads_hosts(settings, certificate))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    host = settings.xds_host
    if settings.xds_port:
        _bound(server.add_insecure_port(f"{host}:{settings.xds_port}"), host, settings.xds_port)
        log.info("xDS (gRPC ADS) on %s:%d", host, settings.xds_port)
    if settings.xds_tls_port and certificate is not None:
        credentials = grpc.ssl_server_credentials([(certificate.key_pem, certificate.chain_pem)])
        port = settings.xds_tls_port
        _bound(server.add_secure_port(f"{host}:{port}", credentials), host, port)
        names = ", ".join(certificate.names)
        log.info("xDS (gRPC ADS over TLS) on %s:%d for %s", host, port, names)
    await server.start()
    return server


def _bound(port: int, host: str, wanted: int) -> None:
    if port == 0:
        raise OSError(
            f"cannot bind the xDS gRPC port {host}:{wanted}; choose another with --xds-port "
            "or --xds-tls-port"
        )
