"""The translator's input: one mesh's resources, one proxy's identity, and what it reaches.

Resources arrive exactly as App Mesh's Describe* calls return them (camelCase botocore
shapes). Nothing here mutates them; the helpers only look things up, so the same snapshot
can be translated for many proxies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Spec = Mapping[str, Any]

HTTP_FAMILY = frozenset({"http", "http2", "grpc"})
ROUTE_KINDS = {"httpRoute": "http", "http2Route": "http2", "grpcRoute": "grpc", "tcpRoute": "tcp"}
GATEWAY_ROUTE_KINDS = {"httpRoute": "http", "http2Route": "http2", "grpcRoute": "grpc"}


@dataclass(frozen=True)
class MeshSnapshot:
    """Every resource of one mesh at one version.

    ``registered_endpoints`` holds the proxy ingress addresses that connected proxies
    registered (explicit mode, or Cloud Map instances resolved by the control plane);
    when a node has none, its ``serviceDiscovery`` decides how its clusters find hosts.
    ``certificates`` maps an ACM certificate or ACM PCA ARN to its PEM material
    (``certificate``, ``certificateChain``, ``privateKey``, as ACM's ExportCertificate and
    ACM PCA's GetCertificateAuthorityCertificate return them); App Mesh delivered that
    material to Envoy as SDS secrets, and without it we emit no secret.
    """

    mesh: dict
    virtual_nodes: Mapping[str, dict]
    virtual_routers: Mapping[str, dict]
    routes: Mapping[str, Mapping[str, dict]]
    virtual_services: Mapping[str, dict]
    virtual_gateways: Mapping[str, dict]
    gateway_routes: Mapping[str, Mapping[str, dict]]
    registered_endpoints: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    version: int = 0
    certificates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def mesh_name(self) -> str:
        return str(self.mesh.get("meshName", ""))

    @property
    def egress_filter(self) -> str:
        """``DROP_ALL`` (the API default) or ``ALLOW_ALL``."""
        spec = _spec(self.mesh)
        return str(spec.get("egressFilter", {}).get("type", "DROP_ALL"))

    @property
    def ip_preference(self) -> str | None:
        return _spec(self.mesh).get("serviceDiscovery", {}).get("ipPreference")

    def node_spec(self, name: str) -> Spec:
        return _live_spec(self.virtual_nodes.get(name))

    def router_spec(self, name: str) -> Spec:
        return _live_spec(self.virtual_routers.get(name))

    def service_spec(self, name: str) -> Spec:
        return _live_spec(self.virtual_services.get(name))

    def gateway_spec(self, name: str) -> Spec:
        return _live_spec(self.virtual_gateways.get(name))

    def has_service(self, name: str) -> bool:
        return _is_live(self.virtual_services.get(name))

    def has_node(self, name: str) -> bool:
        return _is_live(self.virtual_nodes.get(name))

    def has_router(self, name: str) -> bool:
        return _is_live(self.virtual_routers.get(name))

    def router_routes(self, router: str) -> list[tuple[str, Spec]]:
        """``(route name, route spec)`` pairs of a router, live ones only, by name."""
        return _live_children(self.routes.get(router, {}))

    def gateway_route_specs(self, gateway: str) -> list[tuple[str, Spec]]:
        """``(gateway route name, spec)`` pairs of a gateway, live ones only, by name."""
        return _live_children(self.gateway_routes.get(gateway, {}))


@dataclass(frozen=True)
class NodeIdentity:
    """Which proxy we translate for, and where that proxy listens."""

    kind: Literal["virtualNode", "virtualGateway"]
    name: str
    ingress_port: int = 15000
    egress_port: int = 15001
    app_host: str = "127.0.0.1"
    listen_address: str = "0.0.0.0"

    @property
    def is_gateway(self) -> bool:
        return self.kind == "virtualGateway"

    @property
    def loopback(self) -> str:
        """Address at which this proxy reaches its own listeners."""
        if self.listen_address in ("0.0.0.0", "::", ""):
            return "::1" if self.listen_address == "::" else "127.0.0.1"
        return self.listen_address


@dataclass(frozen=True, order=True)
class PortMapping:
    """A listener's ``portMapping``: the port and its protocol."""

    port: int
    protocol: str


def port_mappings(listeners: list[Spec] | None) -> tuple[PortMapping, ...]:
    """The port mappings of a listener list, first one winning on a repeated port."""
    seen: dict[int, PortMapping] = {}
    for listener in listeners or ():
        mapping = listener.get("portMapping") or {}
        if "port" in mapping and mapping["port"] not in seen:
            seen[mapping["port"]] = PortMapping(
                int(mapping["port"]), mapping.get("protocol", "http")
            )
    return tuple(seen.values())


def listener_at(listeners: list[Spec] | None, port: int) -> Spec:
    """The listener of a listener list on ``port``, or ``{}``."""
    for listener in listeners or ():
        if (listener.get("portMapping") or {}).get("port") == port:
            return listener
    return {}


def node_listener(snapshot: MeshSnapshot, node: str, port: int) -> Spec:
    """The listener of virtual node ``node`` on ``port``, or ``{}``."""
    return listener_at(snapshot.node_spec(node).get("listeners"), port)


def service_provider(snapshot: MeshSnapshot, service: str) -> tuple[str, str] | None:
    """``("virtualNode" | "virtualRouter", name)`` of a live provider, else None."""
    provider = snapshot.service_spec(service).get("provider") or {}
    node = (provider.get("virtualNode") or {}).get("virtualNodeName")
    if node and snapshot.has_node(node):
        return ("virtualNode", node)
    router = (provider.get("virtualRouter") or {}).get("virtualRouterName")
    if router and snapshot.has_router(router):
        return ("virtualRouter", router)
    return None


def service_ports(snapshot: MeshSnapshot, service: str) -> tuple[PortMapping, ...]:
    """The ports a virtual service answers on: its provider's listener ports."""
    provider = service_provider(snapshot, service)
    if provider is None:
        return ()
    kind, name = provider
    spec = snapshot.node_spec(name) if kind == "virtualNode" else snapshot.router_spec(name)
    return port_mappings(spec.get("listeners"))


def reachable_services(snapshot: MeshSnapshot, identity: NodeIdentity) -> tuple[str, ...]:
    """The virtual services this proxy gets egress routes for, sorted by name.

    A gateway reaches the targets of its gateway routes. A virtual node reaches its
    backends. Under ALLOW_ALL a node that declares no backends reaches every virtual
    service of the mesh; one that declares any reaches only those, and everything else
    goes to its original destination through the passthrough cluster. That is App Mesh's
    rule as its User Guide states it ("a node that declares any backend must declare all
    its egress as backends") and as the troubleshooting guide describes the passthrough.
    """
    if identity.is_gateway:
        names = {
            _gateway_route_target(spec) for _, spec in snapshot.gateway_route_specs(identity.name)
        }
        return tuple(sorted(name for name in names if name and snapshot.has_service(name)))
    names = set(_backend_policies(snapshot.node_spec(identity.name)))
    if snapshot.egress_filter == "ALLOW_ALL" and not names:
        names = set(snapshot.virtual_services)
    return tuple(sorted(name for name in names if name and snapshot.has_service(name)))


def client_policy(snapshot: MeshSnapshot, identity: NodeIdentity, service: str) -> Spec:
    """The TLS client policy this proxy applies toward ``service``: the backend's own
    ``clientPolicy`` when set, else the node's or gateway's ``backendDefaults``."""
    if identity.is_gateway:
        spec = snapshot.gateway_spec(identity.name)
        return (spec.get("backendDefaults") or {}).get("clientPolicy") or {}
    spec = snapshot.node_spec(identity.name)
    own = _backend_policies(spec).get(service)
    return own or (spec.get("backendDefaults") or {}).get("clientPolicy") or {}


def own_listeners(snapshot: MeshSnapshot, identity: NodeIdentity) -> list[Spec]:
    """The listeners of the node or gateway itself."""
    spec = (
        snapshot.gateway_spec(identity.name)
        if identity.is_gateway
        else snapshot.node_spec(identity.name)
    )
    return list(spec.get("listeners") or ())


def own_owner(snapshot: MeshSnapshot, identity: NodeIdentity) -> str:
    """The account owning the node or gateway itself (``""`` when the snapshot does not
    say, as in hand-built snapshots)."""
    kind = snapshot.virtual_gateways if identity.is_gateway else snapshot.virtual_nodes
    metadata = (kind.get(identity.name) or {}).get("metadata") or {}
    return str(metadata.get("resourceOwner") or "")


def own_logging(snapshot: MeshSnapshot, identity: NodeIdentity) -> Spec:
    spec = (
        snapshot.gateway_spec(identity.name)
        if identity.is_gateway
        else snapshot.node_spec(identity.name)
    )
    return spec.get("logging") or {}


def _gateway_route_target(spec: Spec) -> str:
    for kind in GATEWAY_ROUTE_KINDS:
        if kind in spec:
            target = (spec[kind].get("action") or {}).get("target") or {}
            return str((target.get("virtualService") or {}).get("virtualServiceName", ""))
    return ""


def _backend_policies(spec: Spec) -> dict[str, Spec]:
    policies: dict[str, Spec] = {}
    for backend in spec.get("backends") or ():
        service = backend.get("virtualService") or {}
        if service.get("virtualServiceName"):
            policies[service["virtualServiceName"]] = service.get("clientPolicy") or {}
    return policies


def _spec(data: Mapping[str, Any] | None) -> Spec:
    return (data or {}).get("spec") or {}


def _is_live(data: Mapping[str, Any] | None) -> bool:
    """A resource counts unless it is absent or its status says DELETED."""
    if not data:
        return False
    return (data.get("status") or {}).get("status") != "DELETED"


def _live_spec(data: Mapping[str, Any] | None) -> Spec:
    return _spec(data) if _is_live(data) else {}


def _live_children(children: Mapping[str, dict]) -> list[tuple[str, Spec]]:
    return [(name, _spec(data)) for name, data in sorted(children.items()) if _is_live(data)]
