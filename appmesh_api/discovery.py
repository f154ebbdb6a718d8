"""Envoy's discovery protocol (xDS v3) over REST-JSON, with long-poll push.

``POST /v3/discovery:{listeners|clusters|routes|endpoints|secrets}`` takes a
DiscoveryRequest and answers a DiscoveryResponse, as Envoy's REST transport
defines them (version_info, nonce, ACK/NACK with error_detail). The push
channel is a long-poll on the same endpoint: with ``?wait=S`` the server holds
a request whose version the proxy already has until its mesh changes, or
answers 304 after S seconds. A NACKed version is never resent: the proxy keeps
its last good config until the mesh changes again.

The design follows go-control-plane: an immutable snapshot per mesh version,
translated once per node and reused for every type and every proxy of that node.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from appmesh_api.acm import CertificateExporter, CertificateRef, references
from appmesh_api.arns import parse_arn
from appmesh_api.changefeed import ChangeFeed
from appmesh_api.cloudmap import CloudMapQuery, CloudMapResolver
from appmesh_api.dependency_index import DependencyIndex
from appmesh_api.node_watch import NodeWatchers
from appmesh_api.proxies import MAX_PROXIES_PER_RESOURCE, ProxyRegistry
from appmesh_api.settings import DEFAULT_REGION, Settings
from appmesh_api.store import Key, MeshKey, Store
from envoy_bootstrap import envoy_types
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import ResourceNotFound, translate

log = logging.getLogger("appmesh_local.xds")

TYPE_URLS: dict[str, str] = {
    "listeners": envoy_types.LISTENER,
    "clusters": envoy_types.CLUSTER,
    "routes": envoy_types.ROUTE_CONFIGURATION,
    "endpoints": envoy_types.CLUSTER_LOAD_ASSIGNMENT,
    "secrets": envoy_types.SECRET,
}
_RESOURCE_FIELDS = {
    "listeners": "listeners",
    "clusters": "clusters",
    "routes": "route_configurations",
    "endpoints": "endpoints",
    "secrets": "secrets",
}
METADATA_PREFIX = "appmesh_local."
# Seconds between reads of the other replicas' proxy registrations, for a store whose
# replicas do not nudge when they change (``DynamoStore.wait_proxies`` does).
PROXY_POLL = 1.0
PROXY_GAP = 0.05  # the least time between two such reads (a burst of proxies connecting)
# How long a proxy's first request waits for ACM material being fetched for its mesh.
ACM_FIRST_FETCH_SECONDS = 3.0

# google.rpc.Code values used in error bodies.
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED, INTERNAL = 3, 5, 7, 8, 13


class XdsError(Exception):
    """A discovery failure, sent as a google.rpc.Status JSON body."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message = http_status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class ResolvedNode:
    """A proxy's node, located in the store: its mesh, its resource and its ports."""

    mesh: MeshKey
    identity: NodeIdentity
    ingress_address: tuple[str, int] | None


def _metadata(node: Mapping[str, Any], name: str, default: Any = None) -> Any:
    return (node.get("metadata") or {}).get(METADATA_PREFIX + name, default)


def _address(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit():
        raise XdsError(400, INVALID_ARGUMENT, f"ingress_address {text!r} must be HOST:PORT")
    return host.strip("[]"), int(port)


class NodeResolver:
    """Turns ``node.id`` (an ARN, or ``mesh/<m>/virtualNode/<n>``) into a ResolvedNode."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def resolve(self, node: Mapping[str, Any], account: str) -> ResolvedNode:
        """Locate ``node`` for a proxy signed by ``account``, which must own the resource.

        App Mesh's Envoy needed ``appmesh:StreamAggregatedResources`` on its own node's
        ARN, whose account is the resource owner's; so here: a request signed by any other
        account is refused before it sees config or registers an address.
        """
        node_id = str(node.get("id") or "")
        mesh, kind, name = self._locate(node_id, node, account)
        record = self.store.get(Key(*mesh, kind, "", name))
        if record is None:
            raise XdsError(
                404,
                NOT_FOUND,
                f"{kind} {name} is not present in mesh {mesh.mesh} for account "
                f"{mesh.mesh_owner}; create it before starting its proxy",
            )
        owner = record.data["metadata"]["resourceOwner"]
        if owner != account:
            raise XdsError(
                403,
                PERMISSION_DENIED,
                f"account {account} may not stream resources for {kind} {name}: it belongs to "
                f"another account (sign the xDS request with the owner's credentials)",
            )
        identity = NodeIdentity(
            kind=kind,  # type: ignore[arg-type]
            name=name,
            ingress_port=int(_metadata(node, "ingress_port", 15000)),
            egress_port=int(_metadata(node, "egress_port", 15001)),
            app_host=str(_metadata(node, "app_host", "127.0.0.1")),
            listen_address=str(_metadata(node, "listen_address", "0.0.0.0")),
        )
        return ResolvedNode(mesh, identity, _address(_metadata(node, "ingress_address")))

    def _locate(
        self, node_id: str, node: Mapping[str, Any], account: str
    ) -> tuple[MeshKey, str, str]:
        if node_id.startswith("arn:"):
            parsed = parse_arn(node_id)
            if parsed is None or parsed.kind.key not in ("virtualNode", "virtualGateway"):
                raise XdsError(
                    400, INVALID_ARGUMENT, f"node.id {node_id} is not a virtual node or gateway ARN"
                )
            record = self.store.get_by_arn(node_id)
            owner = record.key.mesh_owner if record else parsed.account
            return MeshKey(parsed.region, owner, parsed.mesh), parsed.kind.key, parsed.name
        parts = node_id.split("/")
        if (
            len(parts) != 4
            or parts[0] != "mesh"
            or parts[2] not in ("virtualNode", "virtualGateway")
        ):
            raise XdsError(
                400,
                INVALID_ARGUMENT,
                f"node.id {node_id!r} must be a resource ARN or mesh/<mesh>/virtualNode/<name> "
                "(APPMESH_RESOURCE_ARN or APPMESH_VIRTUAL_NODE_NAME)",
            )
        region = _metadata(node, "region", DEFAULT_REGION)
        owner = _metadata(node, "mesh_owner") or self._owner_of(region, parts[1], account)
        return MeshKey(region, owner, parts[1]), parts[2], parts[3]

    def _owner_of(self, region: str, mesh: str, account: str) -> str:
        """The caller's mesh of that name, the default account's, else the only one."""
        owners = self.store.mesh_owners(region, mesh)
        if account in owners:
            return account
        if self.settings.default_account in owners or len(owners) != 1:
            return self.settings.default_account
        return owners[0]


class SnapshotCache:
    """Immutable snapshots per mesh version, and translated resources per node and version."""

    def __init__(
        self,
        store: Store,
        feed: ChangeFeed,
        registry: ProxyRegistry,
        cloudmap: CloudMapResolver | None = None,
        certificates: CertificateExporter | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.registry = registry
        self.cloudmap = cloudmap
        self.certificates = certificates
        self._meshes: dict[MeshKey, MeshSnapshot] = {}
        self._nodes: dict[tuple[MeshKey, NodeIdentity], tuple[int, dict[str, list[dict]]]] = {}
        self._indexes: dict[MeshKey, DependencyIndex] = {}
        self.watchers = NodeWatchers(feed, self.mesh_snapshot)

    def mesh_snapshot(self, mesh: MeshKey) -> MeshSnapshot:
        """The mesh at the feed's version; moving to a new one diffs against the previous
        snapshot, moves the affected nodes' versions and wakes their watchers."""
        version = self.feed.version(mesh)
        cached = self._meshes.get(mesh)
        if cached is not None and cached.version == version:
            return cached
        try:
            snapshot = self._build(mesh, version)
        except XdsError:
            self._meshes.pop(mesh, None)
            self._indexes.pop(mesh, None)
            raise
        self._meshes[mesh] = snapshot
        index = self._indexes.get(mesh)
        if cached is None or index is None:
            self._indexes[mesh] = DependencyIndex()
        else:
            affected = index.advance(cached, snapshot)
            log.debug("%s at version %d: %d nodes affected", mesh.mesh, version, len(affected))
            self.watchers.wake(mesh, affected)
        return snapshot

    def node_version(self, node: ResolvedNode) -> int:
        """The node's config version: the mesh version its closure last changed at."""
        snapshot = self.mesh_snapshot(node.mesh)
        identity = node.identity
        return self._indexes[node.mesh].version(snapshot, (identity.kind, identity.name))

    def _build(self, mesh: MeshKey, version: int) -> MeshSnapshot:
        """Read one mesh out of the store. Records are replaced, never mutated, on write,
        so the snapshot can share their data without copying."""
        mesh_record = self.store.get(Key(*mesh, "mesh", "", mesh.mesh))
        if mesh_record is None:
            raise XdsError(
                404, NOT_FOUND, f"Mesh {mesh.mesh} is not present for account {mesh.mesh_owner}"
            )

        def data(kind: str, parent: str = "") -> dict[str, dict]:
            return {name: r.data for name, r in self.store.children(mesh, kind, parent).items()}

        routers = data("virtualRouter")
        gateways = data("virtualGateway")
        nodes = data("virtualNode")
        return MeshSnapshot(
            mesh=mesh_record.data,
            virtual_nodes=nodes,
            virtual_routers=routers,
            routes={router: data("route", router) for router in routers},
            virtual_services=data("virtualService"),
            virtual_gateways=gateways,
            gateway_routes={gateway: data("gatewayRoute", gateway) for gateway in gateways},
            registered_endpoints=self._endpoints(mesh, mesh_record.data, nodes),
            version=version,
            certificates=self._certificates(mesh, [*nodes.values(), *gateways.values()]),
        )

    def _certificates(self, mesh: MeshKey, owners: list[dict]) -> dict[str, dict[str, str]]:
        """The ACM material the mesh's nodes and gateways name, as far as it is fetched
        (each ARN asked for as the account owning the resource that names it)."""
        if self.certificates is None:
            return {}
        refs: set[CertificateRef] = set()
        for data in owners:
            if (data.get("status") or {}).get("status") == "DELETED":
                continue
            owner = str((data.get("metadata") or {}).get("resourceOwner") or mesh.mesh_owner)
            refs |= {CertificateRef(owner, arn) for arn in references(data.get("spec") or {})}
        fetched = self.certificates.track(mesh, refs)
        return {arn: dict(material) for arn, material in fetched.items()}

    def resources(self, node: ResolvedNode) -> tuple[int, dict[str, list[dict]]]:
        """(version, type name -> resources) for a node, translated at most once per version."""
        key = (node.mesh, node.identity)
        version = self.node_version(node)
        cached = self._nodes.get(key)
        if cached is not None and cached[0] == version:
            return cached
        snapshot = self.mesh_snapshot(node.mesh)
        started = time.perf_counter()
        translated = translate(snapshot, node.identity)
        by_type = {
            name: list(getattr(translated, field)) for name, field in _RESOURCE_FIELDS.items()
        }
        log.debug(
            "translated %s/%s at version %d in %.1f ms",
            node.mesh.mesh,
            node.identity.name,
            version,
            (time.perf_counter() - started) * 1000,
        )
        self._nodes[key] = (version, by_type)
        return version, by_type

    def _endpoints(
        self, mesh: MeshKey, mesh_data: dict, nodes: dict[str, dict]
    ) -> dict[str, tuple[tuple[str, int], ...]]:
        """Each node's endpoints: its connected proxies, else its Cloud Map instances."""
        endpoints = self.registry.endpoints(mesh)
        mesh_preference = ((mesh_data.get("spec") or {}).get("serviceDiscovery") or {}).get(
            "ipPreference"
        )
        for name, node in nodes.items():
            spec = node.get("spec") or {}
            cloud_map = (spec.get("serviceDiscovery") or {}).get("awsCloudMap")
            if name in endpoints or not cloud_map or self.cloudmap is None:
                continue
            listeners = spec.get("listeners") or [{}]
            port = (listeners[0].get("portMapping") or {}).get("port", 80)
            query = CloudMapQuery.from_spec(mesh, cloud_map, port, mesh_preference)
            endpoints[name] = self.cloudmap.endpoints(query)
        return endpoints


class DiscoveryService:
    """Answers DiscoveryRequests; ``boot`` makes versions from before a restart never match."""

    def __init__(self, store: Store, feed: ChangeFeed, settings: Settings) -> None:
        self.feed = feed
        self.store = store
        self.registry = ProxyRegistry()
        self.registry.restore(store.load_proxies())
        # Replicas on a shared store: the proxies connected to the others count too.
        self._shared_proxies = getattr(store, "shared_proxies", None)
        self._wait_proxies = getattr(store, "wait_proxies", None)
        if self._shared_proxies is not None:
            self.registry.merge(self._shared_proxies())
        self.resolver = NodeResolver(store, settings)
        self.cloudmap = CloudMapResolver(settings.side_services_endpoint, settings.internal_secret)
        self.certificates = CertificateExporter(
            settings.side_services_endpoint, settings.internal_secret
        )
        self.cache = SnapshotCache(store, feed, self.registry, self.cloudmap, self.certificates)
        self.boot = uuid.uuid4().hex[:8]
        self._digests: dict[tuple, tuple[int, dict[str, tuple[str, dict]]]] = {}
        self._encoded: dict[tuple, tuple[int, Any]] = {}
        self._save_pending = False

    def version_string(self, version: int) -> str:
        return f"{self.boot}-{version}"

    def register(self, request: Mapping[str, Any], account: str) -> ResolvedNode:
        """Resolve and record the proxy behind ``request``, signed by ``account``."""
        node = request.get("node") or {}
        resolved = self.resolver.resolve(node, account)
        identity = resolved.identity
        state, new = self.registry.seen(
            str(node.get("id")),
            resolved.mesh,
            identity.kind,
            identity.name,
            resolved.ingress_address,
        )
        if new:
            if (
                self.registry.count_for(resolved.mesh, identity.kind, identity.name)
                > MAX_PROXIES_PER_RESOURCE
            ):
                self.registry.forget(state)
                raise XdsError(
                    429,
                    RESOURCE_EXHAUSTED,
                    f"More than {MAX_PROXIES_PER_RESOURCE} proxies are connected for "
                    f"{identity.kind} {identity.name}",
                )
            log.info("proxy %s connected for %s %s", node.get("id"), identity.kind, identity.name)
            if resolved.ingress_address is not None:
                # A new endpoint of its node: saved (replicas, restarts) and pushed now.
                self.store.save_proxies(self.registry.rows())
                self.feed.publish(resolved.mesh)
            else:
                # Changes no config; saved in a batch, as saving rewrites every registration.
                self._save_soon()
        self._record_ack(state, request)
        return resolved

    def _save_soon(self, delay: float = 0.5) -> None:
        """Save the registrations within ``delay`` (once for every proxy that connects
        meanwhile); at once when there is no event loop to wait in."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.store.save_proxies(self.registry.rows())
            return
        if self._save_pending:
            return
        self._save_pending = True

        def save() -> None:
            self._save_pending = False
            self.store.save_proxies(self.registry.rows())

        loop.call_later(delay, save)

    @staticmethod
    def _record_ack(state, request: Mapping[str, Any]) -> None:
        type_url = str(request.get("type_url") or "")
        error = request.get("error_detail")
        if error:
            rejected = {"version": request.get("response_nonce"), "message": error.get("message")}
            if state.rejected.get(type_url) != rejected:
                log.warning("proxy %s rejected %s: %s", state.node_id, type_url, rejected)
            state.rejected[type_url] = rejected
        elif request.get("version_info"):
            state.acked[type_url] = str(request["version_info"])
            if state.rejected.pop(type_url, None) is not None:
                log.info("proxy %s accepted %s again", state.node_id, type_url)

    async def discover(
        self, type_name: str, request: Mapping[str, Any], wait: float, account: str
    ) -> bytes | None:
        """A DiscoveryResponse as JSON, or None when the long-poll ran out with nothing
        new (304)."""
        if type_name not in TYPE_URLS:
            raise XdsError(
                404,
                NOT_FOUND,
                f"unknown discovery type {type_name!r}; use one of {sorted(TYPE_URLS)}",
            )
        request = {"type_url": TYPE_URLS[type_name], **request}
        resolved = self.register(request, account)
        # An ACK carries the version it accepted; a NACK the one it rejected as its nonce.
        # Either way the proxy has seen that version: hold until there is a newer one. A
        # request with an empty version_info (a new or changed subscription) is answered now.
        if request.get("error_detail"):
            seen = str(request.get("response_nonce") or "")
        else:
            seen = str(request.get("version_info") or "")
        if not seen:  # a first request: give the ACM material it names a moment to arrive
            self.cache.mesh_snapshot(resolved.mesh)
            await self.certificates.settled(resolved.mesh, ACM_FIRST_FETCH_SECONDS)
        if wait > 0 and seen == self.version_string(self.node_version(resolved)):
            current = await self.wait_node(resolved, wait)
            if self.version_string(current) == seen:
                return None
        return self.encoded(resolved, type_name, request.get("resource_names") or (), _to_json)

    def encoded(
        self,
        resolved: ResolvedNode,
        type_name: str,
        wanted: Iterable[str],
        encode: Callable[[dict], Any],
    ) -> Any:
        """``encode(response)``, made once per node version, type, resource names and
        encoding: the watchers of one node woken by a change (a thousand long-polls, or
        ADS streams) share one serialisation instead of paying one each."""
        names = tuple(wanted)
        version = self._resources(resolved)[0]  # checked first: most callers share a hit
        key = (resolved.mesh, resolved.identity, type_name, names, encode)
        cached = self._encoded.get(key)
        if cached is None or cached[0] != version:
            response = self.response(resolved, type_name, names)
            cached = self._encoded[key] = (version, encode(response))
        return cached[1]

    def response(self, resolved: ResolvedNode, type_name: str, wanted: Iterable[str]) -> dict:
        """The current DiscoveryResponse of one type for a node (shared by REST and gRPC)."""
        version, by_type = self._resources(resolved)
        resources = by_type[type_name]
        names = set(wanted)
        if names and type_name in ("routes", "endpoints", "secrets"):
            resources = [r for r in resources if _resource_name(r) in names]
        version_info = self.version_string(version)
        return {
            "version_info": version_info,
            "resources": resources,
            "type_url": TYPE_URLS[type_name],
            "nonce": version_info,
        }

    def _resources(self, resolved: ResolvedNode) -> tuple[int, dict[str, list[dict]]]:
        """The node's (version, translated resources), failures as xDS errors."""
        try:
            return self.cache.resources(resolved)
        except ResourceNotFound as exc:
            raise XdsError(404, NOT_FOUND, str(exc)) from exc
        except XdsError:
            raise
        except Exception as exc:  # a translation bug must not take the server down
            log.exception("translation failed for %s", resolved.identity.name)
            raise XdsError(500, INTERNAL, f"translation failed: {exc}") from exc

    def delta_resources(
        self, resolved: ResolvedNode, type_name: str
    ) -> tuple[int, dict[str, tuple[str, dict]]]:
        """(node version, name -> (resource version, resource)) of one type, for
        incremental ADS; digests are computed once per node version and type."""
        response = self.response(resolved, type_name, ())
        version = int(response["version_info"].rpartition("-")[2])
        key = (resolved.mesh, resolved.identity, type_name)
        cached = self._digests.get(key)
        if cached is None or cached[0] != version:
            named = {_resource_name(r): (resource_version(r), r) for r in response["resources"]}
            cached = self._digests[key] = (version, named)
        return cached

    def node_version(self, resolved: ResolvedNode) -> int:
        try:
            return self.cache.node_version(resolved)
        except ResourceNotFound as exc:
            raise XdsError(404, NOT_FOUND, str(exc)) from exc

    async def wait_node(self, resolved: ResolvedNode, timeout: float) -> int:
        """Wait until the node's config version moves (or ``timeout``); its version then."""
        seen = self.node_version(resolved)
        key = (resolved.identity.kind, resolved.identity.name)
        deadline = time.monotonic() + timeout
        while not self.feed.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self.cache.watchers.wait(resolved.mesh, key, left)
            current = self.node_version(resolved)
            if current != seen:
                return current
        return self.node_version(resolved)

    def expire(self) -> None:
        """Forget silent proxies (their meshes change), and save who is connected."""
        for mesh in self.registry.expire():
            self.feed.publish(mesh)
        self.store.save_proxies(self.registry.rows())

    async def follow_proxies(self) -> None:
        """Forever, with replicas: take in the proxies connected to the other replicas
        (when a peer's nudge says they changed, and every few seconds for the
        heartbeats), and push new endpoints to this replica's proxies of the meshes
        that changed. A read at most every ``PROXY_GAP`` s, however often nudged."""
        if self._shared_proxies is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            if self._wait_proxies is not None:
                await self._wait_proxies()
            else:
                await asyncio.sleep(PROXY_POLL)
            try:
                rows = await loop.run_in_executor(None, self._shared_proxies)
            except Exception:
                log.exception("could not read the other replicas' proxy registrations")
                continue
            for mesh in self.registry.merge(rows):
                self.feed.publish(mesh)
            await asyncio.sleep(PROXY_GAP)


def _to_json(response: Mapping[str, Any]) -> bytes:
    return json.dumps(response, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def resource_version(resource: Mapping[str, Any]) -> str:
    """A resource's own version (incremental xDS): a digest of its content, so equal
    content has equal versions across replicas and restarts."""
    text = json.dumps(resource, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resource_name(resource: Mapping[str, Any]) -> str:
    return str(resource.get("name") or resource.get("cluster_name") or "")
