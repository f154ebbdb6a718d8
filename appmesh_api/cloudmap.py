"""Cloud Map discovery for virtual nodes, done by the control plane as App Mesh did.

A node whose ``serviceDiscovery`` is ``awsCloudMap`` has no DNS name to resolve:
its endpoints are the service's instances that carry every listed attribute.
App Mesh's control plane called DiscoverInstances and pushed the result to the
Envoys as EDS; so do we, against the side services (embedded moto, or
``--aws-endpoint``), refreshed on a timer. A change in the instance set moves the
mesh's version, so proxies get new endpoints without asking.

Lookups never block the event loop (the embedded Cloud Map answers on this very
server): the first request for a node answers with no endpoints and schedules a
lookup, whose result arrives as a push a moment later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from appmesh_api.sidepoller import NoSideServiceEndpoint, SideServicePoller
from appmesh_api.store import MeshKey

log = logging.getLogger("appmesh_local.cloudmap")

Address = tuple[str, int]


@dataclass(frozen=True)
class CloudMapQuery:
    """One node's Cloud Map selector, in the mesh owner's account and region."""

    mesh: MeshKey
    namespace: str
    service: str
    attributes: tuple[tuple[str, str], ...]
    default_port: int
    ip_preference: str | None = None

    @classmethod
    def from_spec(
        cls, mesh: MeshKey, discovery: dict, default_port: int, ip_preference: str | None
    ) -> CloudMapQuery:
        attributes = tuple(
            sorted((a["key"], a["value"]) for a in discovery.get("attributes") or ())
        )
        preference = discovery.get("ipPreference") or ip_preference
        return cls(
            mesh,
            discovery["namespaceName"],
            discovery["serviceName"],
            attributes,
            default_port,
            preference,
        )


def instance_address(attributes: dict[str, str], query: CloudMapQuery) -> Address | None:
    """An instance's address, honouring ipPreference (IPv6 first when preferred)."""
    ipv4, ipv6 = attributes.get("AWS_INSTANCE_IPV4"), attributes.get("AWS_INSTANCE_IPV6")
    prefer_v6 = (query.ip_preference or "").startswith("IPv6")
    host = (ipv6 or ipv4) if prefer_v6 else (ipv4 or ipv6)
    if not host:
        return None
    port = attributes.get("AWS_INSTANCE_PORT")
    return host, int(port) if port and port.isdigit() else query.default_port


class CloudMapResolver(SideServicePoller):
    """Cached DiscoverInstances results per query, refreshed every ``interval`` seconds."""

    def __init__(
        self,
        endpoint: Callable[[], str | None],
        secret: str = "appmesh-local",
        interval: float = 5.0,
    ) -> None:
        super().__init__(endpoint, secret, interval)
        self._results: dict[CloudMapQuery, tuple[Address, ...]] = {}
        self._wanted: dict[CloudMapQuery, float] = {}

    def endpoints(self, query: CloudMapQuery) -> tuple[Address, ...]:
        """The last known instances (empty before the first lookup finishes)."""
        first_time = query not in self._wanted
        self._wanted[query] = time.monotonic()
        if first_time:
            self.wake()
        return self._results.get(query, ())

    def _discover(self, query: CloudMapQuery) -> tuple[Address, ...]:
        try:
            client = self.client(
                "servicediscovery",
                query.mesh.region,
                query.mesh.mesh_owner,
                inject_host_prefix=False,  # DiscoverInstances' data-plane host prefix
            )
        except NoSideServiceEndpoint:
            return ()
        found = client.discover_instances(
            NamespaceName=query.namespace,
            ServiceName=query.service,
            QueryParameters=dict(query.attributes),
            HealthStatus="HEALTHY_OR_ELSE_ALL",
            MaxResults=1000,
        )["Instances"]
        addresses = (instance_address(i.get("Attributes") or {}, query) for i in found)
        return tuple(sorted(a for a in addresses if a is not None))

    async def run(self, publish: Callable[[MeshKey], object]) -> None:
        """Refresh every wanted query; publish its mesh when the instance set changed."""
        async for _ in self.rounds():
            stale_before = time.monotonic() - 10 * self.interval
            for query, asked in list(self._wanted.items()):
                if asked < stale_before:  # nobody has asked for a while: stop polling
                    self._wanted.pop(query, None)
                    continue
                await self._refresh(query, publish)

    async def _refresh(self, query: CloudMapQuery, publish: Callable[[MeshKey], object]) -> None:
        try:
            found = await asyncio.to_thread(self._discover, query)
        except Exception as exc:  # Cloud Map down or the namespace missing: keep the last result
            log.warning("Cloud Map lookup %s.%s failed: %s", query.service, query.namespace, exc)
            return
        if self._results.get(query) != found:
            log.info("Cloud Map %s.%s: %d instance(s)", query.service, query.namespace, len(found))
            self._results[query] = found
            publish(query.mesh)
