"""Incremental ADS (``DeltaAggregatedResources``): send only the resources that changed.

In a big mesh a node's clusters and route configurations run to thousands; State of the
World resends all of a type when one changes. Here each resource carries its own version
(a digest of its content), the stream remembers what the proxy holds, and a response
carries only new or changed resources plus ``removed_resources`` for those gone. It is
driven by the same per-node versions as SotW (``node_watch``): a change the node does not
depend on wakes nothing.

Per type URL the proxy subscribes (``resource_names_subscribe``) and unsubscribes; an
empty first request for listeners or clusters, or the name ``*``, is a wildcard (all of
the type). ``initial_resource_versions`` (a reconnecting proxy's holdings) are honoured:
what is unchanged is not resent. Every response has a fresh nonce; a request naming it
with ``error_detail`` is a NACK, recorded (``/_appmesh/proxies``) and not answered with
the same resources again, as in SotW.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, json_format

from appmesh_api.discovery import TYPE_URLS, DiscoveryService, ResolvedNode, XdsError
from envoy_bootstrap.validate import parse_resource

log = logging.getLogger("appmesh_local.ads")

TYPE_NAMES = {url: name for name, url in TYPE_URLS.items()}
WILDCARD = "*"
#: Types a proxy asks for as a whole (Envoy's LDS and CDS) when it names nothing.
WILDCARD_BY_DEFAULT = ("listeners", "clusters")


@dataclass
class _Subscription:
    """One type on one stream: what the proxy asked for and what it holds (name -> version)."""

    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    held: dict[str, str] = field(default_factory=dict)
    started: bool = False

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


class DeltaStream:
    """One proxy's incremental ADS stream."""

    def __init__(self, discovery: DiscoveryService, account: str) -> None:
        self.discovery = discovery
        self.account = account
        self.node: ResolvedNode | None = None
        self.node_json: dict[str, Any] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self.nonces: dict[str, str] = {}  # nonce -> system version it carried
        self.seen = -1  # the node config version last pushed from
        self.outbox: asyncio.Queue[discovery_pb2.DeltaDiscoveryResponse | XdsError] = (
            asyncio.Queue()
        )

    def handle(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        if request.HasField("node"):
            self.node_json = json_format.MessageToDict(
                request.node, preserving_proto_field_name=True
            )
        type_name = TYPE_NAMES.get(request.type_url)
        if type_name is None:
            raise XdsError(400, 3, f"unsupported type_url {request.type_url!r}")
        self.node = self.discovery.register(self._as_json(request), self.account)
        subscription = self.subscriptions.setdefault(type_name, _Subscription())
        first = not subscription.started
        subscription.started = True
        subscribe = set(request.resource_names_subscribe)
        if first and not subscribe and type_name in WILDCARD_BY_DEFAULT:
            subscribe = {WILDCARD}
        subscription.wildcard = (subscription.wildcard or WILDCARD in subscribe) and (
            WILDCARD not in request.resource_names_unsubscribe
        )
        subscription.names |= subscribe - {WILDCARD}
        for name in request.resource_names_unsubscribe:
            subscription.names.discard(name)
            subscription.held.pop(name, None)
        if first:
            subscription.held.update(dict(request.initial_resource_versions))
        if first or subscribe or request.resource_names_unsubscribe:
            self.push(type_name)

    def _as_json(self, request: discovery_pb2.DeltaDiscoveryRequest) -> dict[str, Any]:
        """The request as ``register`` reads SotW ones (node, type, ACKed version, NACK)."""
        as_json: dict[str, Any] = {"node": self.node_json, "type_url": request.type_url}
        nonce = request.response_nonce
        if nonce:
            as_json["response_nonce"] = nonce
            if request.HasField("error_detail"):
                as_json["error_detail"] = {
                    "code": request.error_detail.code,
                    "message": request.error_detail.message,
                }
            elif nonce in self.nonces:
                as_json["version_info"] = self.nonces[nonce]
        return as_json

    def push(self, type_name: str) -> None:
        """Send what changed for one type since the proxy last heard, if anything."""
        assert self.node is not None
        subscription = self.subscriptions[type_name]
        seen, current = self.discovery.delta_resources(self.node, type_name)
        self.seen = max(self.seen, seen)
        version = self.discovery.version_string(seen)
        changed = [
            (name, digest, resource)
            for name, (digest, resource) in current.items()
            if subscription.wants(name) and subscription.held.get(name) != digest
        ]
        held = subscription.held
        removed = [n for n in held if n not in current or not subscription.wants(n)]
        if not changed and not removed:
            return
        for name, digest, _ in changed:
            subscription.held[name] = digest
        for name in removed:
            del subscription.held[name]
        self.outbox.put_nowait(self._response(type_name, version, changed, removed))

    def _response(
        self,
        type_name: str,
        version: str,
        changed: list[tuple[str, str, dict]],
        removed: list[str],
    ) -> discovery_pb2.DeltaDiscoveryResponse:
        nonce = uuid.uuid4().hex[:12]
        self.nonces[nonce] = version
        if len(self.nonces) > 64:  # only recent nonces are ever answered
            self.nonces.pop(next(iter(self.nonces)))
        resources = []
        for name, digest, resource in changed:
            wrapper = any_pb2.Any()
            wrapper.Pack(parse_resource(resource))
            resources.append(discovery_pb2.Resource(name=name, version=digest, resource=wrapper))
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            resources=resources,
            type_url=TYPE_URLS[type_name],
            removed_resources=sorted(removed),
            nonce=nonce,
        )

    async def watch(self) -> None:
        """Push every subscribed type's changes whenever the node's config version moves."""
        while self.node is None:
            await asyncio.sleep(0.05)
        while True:
            try:
                if self.discovery.node_version(self.node) == self.seen:
                    await self.discovery.wait_node(self.node, 30.0)
                if self.discovery.feed.closed:
                    return
                current = self.discovery.node_version(self.node)
                if current != self.seen:
                    for type_name in list(self.subscriptions):
                        self.push(type_name)
                    self.seen = current
            except XdsError as error:
                self.outbox.put_nowait(error)
                return
