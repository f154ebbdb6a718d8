"""Build App Mesh snapshots by hand, the way DescribeX calls return resources."""

from __future__ import annotations

from typing import Any

from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import EnvoyResources, translate

MESH = "m"


def resource(key: str, name: str, spec: dict, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "meshName": MESH,
        key: name,
        "spec": spec,
        "metadata": {"arn": f"arn:aws:appmesh:us-east-1:111122223333:mesh/{MESH}/x/{name}"},
        "status": {"status": status},
    }


def listener(port: int, protocol: str = "http", **extra: Any) -> dict[str, Any]:
    return {"portMapping": {"port": port, "protocol": protocol}, **extra}


def dns(hostname: str, **extra: Any) -> dict[str, Any]:
    return {"dns": {"hostname": hostname, **extra}}


def targets(*pairs: tuple[str, int] | tuple[str, int, int]) -> list[dict[str, Any]]:
    result = []
    for pair in pairs:
        target: dict[str, Any] = {"virtualNode": pair[0], "weight": pair[1]}
        if len(pair) == 3:
            target["port"] = pair[2]
        result.append(target)
    return result


def http_route(match: dict | None = None, *pairs: Any, kind: str = "httpRoute", **extra: Any):
    """A route spec: ``{kind: {match, action, ...extra}}``; ``priority`` goes outside."""
    priority = extra.pop("priority", None)
    body = {"match": match or {"prefix": "/"}, "action": {"weightedTargets": targets(*pairs)}}
    body.update(extra)
    spec: dict[str, Any] = {kind: body}
    if priority is not None:
        spec["priority"] = priority
    return spec


def seconds(value: int) -> dict[str, Any]:
    return {"unit": "s", "value": value}


def millis(value: int) -> dict[str, Any]:
    return {"unit": "ms", "value": value}


class Mesh:
    """A fluent builder; every method returns ``self``."""

    def __init__(self, egress: str = "DROP_ALL", ip_preference: str | None = None) -> None:
        spec: dict[str, Any] = {"egressFilter": {"type": egress}}
        if ip_preference:
            spec["serviceDiscovery"] = {"ipPreference": ip_preference}
        self.mesh = {"meshName": MESH, "spec": spec, "status": {"status": "ACTIVE"}}
        self.nodes: dict[str, dict] = {}
        self.routers: dict[str, dict] = {}
        self.routes: dict[str, dict[str, dict]] = {}
        self.services: dict[str, dict] = {}
        self.gateways: dict[str, dict] = {}
        self.gateway_routes: dict[str, dict[str, dict]] = {}

    def node(
        self,
        name: str,
        *listeners: dict,
        backends: tuple[str, ...] | list = (),
        discovery: dict | None = None,
        status: str = "ACTIVE",
        **extra: Any,
    ) -> Mesh:
        spec: dict[str, Any] = {"listeners": list(listeners), **extra}
        spec["backends"] = [
            b if isinstance(b, dict) else {"virtualService": {"virtualServiceName": b}}
            for b in backends
        ]
        spec["serviceDiscovery"] = discovery if discovery is not None else dns(f"{name}.local")
        if spec["serviceDiscovery"] == {}:
            del spec["serviceDiscovery"]
        self.nodes[name] = resource("virtualNodeName", name, spec, status)
        return self

    def router(self, name: str, *ports: int | tuple[int, str]) -> Mesh:
        mappings = [listener(*p) if isinstance(p, tuple) else listener(p) for p in ports]
        self.routers[name] = resource("virtualRouterName", name, {"listeners": mappings})
        return self

    def route(self, router: str, name: str, spec: dict, status: str = "ACTIVE") -> Mesh:
        self.routes.setdefault(router, {})[name] = resource("routeName", name, spec, status)
        return self

    def service(self, name: str, node: str | None = None, router: str | None = None) -> Mesh:
        provider: dict[str, Any] = {}
        if node:
            provider = {"virtualNode": {"virtualNodeName": node}}
        elif router:
            provider = {"virtualRouter": {"virtualRouterName": router}}
        spec = {"provider": provider} if provider else {}
        self.services[name] = resource("virtualServiceName", name, spec)
        return self

    def gateway(self, name: str, *listeners: dict, **extra: Any) -> Mesh:
        spec = {"listeners": list(listeners), **extra}
        self.gateways[name] = resource("virtualGatewayName", name, spec)
        return self

    def gateway_route(self, gateway: str, name: str, spec: dict) -> Mesh:
        self.gateway_routes.setdefault(gateway, {})[name] = resource("gatewayRouteName", name, spec)
        return self

    def build(self, **extra: Any) -> MeshSnapshot:
        return MeshSnapshot(
            mesh=self.mesh,
            virtual_nodes=self.nodes,
            virtual_routers=self.routers,
            routes=self.routes,
            virtual_services=self.services,
            virtual_gateways=self.gateways,
            gateway_routes=self.gateway_routes,
            **extra,
        )

    def translate(self, name: str, kind: str = "virtualNode", **extra: Any) -> EnvoyResources:
        return translate(self.build(**extra), NodeIdentity(kind, name))  # type: ignore[arg-type]


def gateway_route(match: dict, service: str, kind: str = "httpRoute", **action: Any) -> dict:
    priority = action.pop("priority", None)
    target: dict[str, Any] = {"virtualService": {"virtualServiceName": service}}
    if "port" in action:
        target["port"] = action.pop("port")
    spec: dict[str, Any] = {kind: {"match": match, "action": {"target": target, **action}}}
    if priority is not None:
        spec["priority"] = priority
    return spec


def named(items: tuple | list, name: str) -> dict:
    """The resource, virtual host, filter chain or cluster entry called ``name``."""
    for item in items:
        if item.get("name") == name:
            return item
    raise KeyError(f"{name} not in {[i.get('name') for i in items]}")


def vhost(resources: EnvoyResources, config: str, name: str) -> dict:
    return named(named(resources.route_configurations, config)["virtual_hosts"], name)


def chain(listener_resource: dict, name: str) -> dict:
    return named(listener_resource["filter_chains"], name)


def typed_config(filter_or_socket: dict) -> dict:
    return filter_or_socket["typed_config"]
