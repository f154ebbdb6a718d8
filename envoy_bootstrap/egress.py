"""The egress plan: for each virtual service a proxy reaches, on each of its ports, the
routes that apply and the target node listeners they send to.

Listeners, route configurations and clusters are all views of this one plan, so the
question "which routes serve service S on port P" is answered once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from envoy_bootstrap.snapshot import (
    HTTP_FAMILY,
    ROUTE_KINDS,
    MeshSnapshot,
    NodeIdentity,
    PortMapping,
    Spec,
    node_listener,
    port_mappings,
    reachable_services,
    service_ports,
    service_provider,
)


@dataclass(frozen=True, order=True)
class Target:
    """One listener of a target virtual node: what an egress cluster stands for."""

    node: str
    port: int
    protocol: str


@dataclass(frozen=True)
class ServiceRoute:
    """One App Mesh route (or the implicit route of a virtual-node provider) on a port.

    ``body`` is the route's ``httpRoute``/``http2Route``/``grpcRoute``/``tcpRoute`` object;
    ``name`` is empty for a virtual-node provider, which has no route resource.
    """

    name: str
    protocol: str
    body: Spec
    priority: int | None
    targets: tuple[tuple[Target, int], ...]


@dataclass(frozen=True)
class ServicePort:
    """A virtual service on one of its ports, with the routes serving that port."""

    service: str
    port: int
    protocol: str
    routes: tuple[ServiceRoute, ...]
    several_ports: bool

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_FAMILY


@dataclass(frozen=True)
class EgressPlan:
    """What a proxy reaches; the indexes below keep every lookup linear in the plan."""

    services: tuple[ServicePort, ...]

    def http_ports(self) -> tuple[int, ...]:
        return tuple(sorted(self._http_by_port))

    def http_services(self, port: int | None = None) -> tuple[ServicePort, ...]:
        if port is None:
            return tuple(e for e in self.services if e.is_http)
        return self._http_by_port.get(port, ())

    def first_http_port(self, service: str) -> int | None:
        """The lowest HTTP-family port of ``service``: where its bare name goes."""
        return self._first_http_port.get(service)

    def tcp_ports(self) -> tuple[tuple[int, ServicePort], ...]:
        """Ports carrying only TCP services, by port, each with the TCP service owning it:
        HTTP wins a port both protocols claim, and the owner is the first service by name,
        because Envoy sees only the destination port of a TCP connection (App Mesh
        roadmap#195)."""
        owners = self._tcp_owner
        return tuple((port, owners[port]) for port in sorted(set(owners) - set(self._http_by_port)))

    def serves_proxy_port(self, egress_port: int) -> bool:
        """Whether the egress listener also answers connections made to its own port
        (a gateway's self-redirect, or an application using the proxy directly): when
        there is HTTP to route and no service already claims that port."""
        taken = egress_port in self._http_by_port or egress_port in self._tcp_owner
        return not taken and bool(self._http_by_port)

    def targets(self) -> dict[Target, str]:
        """Every target listener, mapped to the first service (by name) that reaches it;
        that service's client policy decides the cluster's upstream TLS."""
        found: dict[Target, str] = {}
        for entry in self.services:
            if not entry.is_http and self._tcp_owner.get(entry.port) is not entry:
                continue
            for route in entry.routes:
                for target, _ in route.targets:
                    found.setdefault(target, entry.service)
        return dict(sorted(found.items()))

    @cached_property
    def _http_by_port(self) -> dict[int, tuple[ServicePort, ...]]:
        index: dict[int, list[ServicePort]] = {}
        for entry in self.services:
            if entry.is_http:
                index.setdefault(entry.port, []).append(entry)
        return {port: tuple(entries) for port, entries in index.items()}

    @cached_property
    def _first_http_port(self) -> dict[str, int]:
        first: dict[str, int] = {}
        for entry in self.services:
            if entry.is_http:
                first[entry.service] = min(entry.port, first.get(entry.service, entry.port))
        return first

    @cached_property
    def _tcp_owner(self) -> dict[int, ServicePort]:
        owners: dict[int, ServicePort] = {}
        for entry in self.services:
            if not entry.is_http:
                owners.setdefault(entry.port, entry)
        return owners


def plan_egress(snapshot: MeshSnapshot, identity: NodeIdentity) -> EgressPlan:
    """Build the egress plan of one proxy."""
    entries: list[ServicePort] = []
    for service in reachable_services(snapshot, identity):
        mappings = service_ports(snapshot, service)
        for mapping in mappings:
            routes = _service_routes(snapshot, service, mapping)
            entries.append(
                ServicePort(service, mapping.port, mapping.protocol, routes, len(mappings) > 1)
            )
    return EgressPlan(tuple(entries))


def _service_routes(
    snapshot: MeshSnapshot, service: str, mapping: PortMapping
) -> tuple[ServiceRoute, ...]:
    provider = service_provider(snapshot, service)
    if provider is None:
        return ()
    kind, name = provider
    if kind == "virtualNode":
        return (_node_provider_route(snapshot, name, mapping),)
    return tuple(_router_routes(snapshot, name, mapping))


def _node_provider_route(snapshot: MeshSnapshot, node: str, mapping: PortMapping) -> ServiceRoute:
    """A virtual-node provider behaves like one catch-all route to that node's listener,
    carrying the listener's own timeouts (App Mesh asks for matching timeouts on both)."""
    listener = node_listener(snapshot, node, mapping.port)
    catch_all = {"tcp": None, "grpc": {}}.get(mapping.protocol, {"prefix": "/"})
    body: dict = {} if catch_all is None else {"match": catch_all}
    timeout = (listener.get("timeout") or {}).get(mapping.protocol)
    if timeout:
        body["timeout"] = timeout
    target = Target(node, mapping.port, mapping.protocol)
    return ServiceRoute("", mapping.protocol, body, None, ((target, 100),))


def _router_routes(snapshot: MeshSnapshot, router: str, mapping: PortMapping) -> list[ServiceRoute]:
    """Routes of ``router`` that serve ``mapping``: same protocol, and either no port
    match or a port match equal to this listener's port."""
    routes = []
    for name, spec in snapshot.router_routes(router):
        kind = next((k for k, proto in ROUTE_KINDS.items() if k in spec), None)
        if kind is None or ROUTE_KINDS[kind] != mapping.protocol:
            continue
        body = spec[kind]
        port = (body.get("match") or {}).get("port")
        if port is not None and port != mapping.port:
            continue
        targets = tuple(
            (resolve_target(snapshot, wt, mapping), int(wt.get("weight", 0)))
            for wt in (body.get("action") or {}).get("weightedTargets") or ()
        )
        routes.append(ServiceRoute(name, mapping.protocol, body, spec.get("priority"), targets))
    return routes


def resolve_target(snapshot: MeshSnapshot, weighted: Spec, via: PortMapping) -> Target:
    """The listener a weighted target sends to: its explicit ``port``; else the node's
    only listener; else its first listener of the route's protocol; else its first
    listener; else (a node without listeners) the router port itself."""
    node = str(weighted.get("virtualNode", ""))
    mappings = port_mappings(snapshot.node_spec(node).get("listeners"))
    by_port = {m.port: m for m in mappings}
    if "port" in weighted:
        port = int(weighted["port"])
        return Target(node, port, by_port[port].protocol if port in by_port else via.protocol)
    same_protocol = [m for m in mappings if m.protocol == via.protocol]
    chosen = mappings[0] if len(mappings) == 1 else (same_protocol or list(mappings) or [via])[0]
    return Target(node, chosen.port, chosen.protocol)
