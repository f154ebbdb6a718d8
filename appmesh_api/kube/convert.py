"""A controller object → the App Mesh resource(s) it stands for.

The controller's specs are App Mesh's with a few differences, undone here in order:
1. controller-only fields (``awsName``, ``meshRef``, ``podSelector``, selectors,
   ``backendGroups``, ``virtualGatewayRef``) are dropped after they have been used;
2. references to other objects (``virtualServiceRef``/``virtualServiceARN``,
   ``virtualNodeRef``/``virtualNodeARN``, ``virtualRouterRef``/``virtualRouterARN``)
   become the App Mesh names they resolve to; a reference to an object that does not
   exist is an error, as in the controller;
3. renamed fields (a Mesh's ``meshServiceDiscovery``; ``certificateARN``,
   ``certificateAuthorityARNs``) and every other key are matched to botocore's shapes
   case-insensitively, walking the model, so nothing is renamed by hand and an
   unknown field is refused with its path instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from appmesh_api.kube.names import aws_name, selects
from appmesh_api.kube.objects import KubeObject, ManifestError, Unresolved
from appmesh_api.model import service_model

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
_SPEC_OPERATIONS = {
    "mesh": "CreateMesh",
    "virtualNode": "CreateVirtualNode",
    "virtualRouter": "CreateVirtualRouter",
    "route": "CreateRoute",
    "virtualService": "CreateVirtualService",
    "virtualGateway": "CreateVirtualGateway",
    "gatewayRoute": "CreateGatewayRoute",
}
_APP_MESH_KIND = {
    "Mesh": "mesh",
    "VirtualNode": "virtualNode",
    "VirtualRouter": "virtualRouter",
    "VirtualService": "virtualService",
    "VirtualGateway": "virtualGateway",
    "GatewayRoute": "gatewayRoute",
}
_REFERENCES = {
    # reference field -> (kind it names, App Mesh field it becomes, or None for "by context")
    "virtualServiceRef": ("VirtualService", "virtualServiceName"),
    "virtualServiceARN": ("VirtualService", "virtualServiceName"),
    "virtualNodeRef": ("VirtualNode", None),
    "virtualNodeARN": ("VirtualNode", None),
    "virtualRouterRef": ("VirtualRouter", "virtualRouterName"),
    "virtualRouterARN": ("VirtualRouter", "virtualRouterName"),
}


@dataclass
class Desired:
    """One App Mesh resource an object asks for."""

    kind: str  # App Mesh kind: mesh, virtualNode, route, ...
    mesh: str
    name: str
    spec: dict[str, Any]
    mesh_owner: str | None = None
    parent: str = ""  # the router of a route, the gateway of a gateway route
    routes: list[Desired] = field(default_factory=list)  # a router's routes, by name


class Cluster:
    """The stored objects a conversion may consult (namespaces, meshes, references)."""

    def __init__(self, objects: Mapping[ObjectKey, KubeObject]) -> None:
        self.objects = objects

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self.objects.get((kind, namespace, name))

    def of_kind(self, kind: str) -> list[KubeObject]:
        return sorted(
            (o for o in self.objects.values() if o.kind == kind),
            key=lambda o: (o.namespace, o.name),
        )

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        found = self.get("Namespace", "", namespace)
        labels = dict(found.labels) if found else {}
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return labels

    # -- membership ------------------------------------------------------------------------
    def mesh_of(self, obj: KubeObject) -> KubeObject:
        """The Mesh an object belongs to: ``meshRef`` if given, else the one Mesh whose
        ``namespaceSelector`` matches the object's namespace (the controller's rule)."""
        ref = obj.spec.get("meshRef")
        if isinstance(ref, dict) and ref.get("name"):
            mesh = self.get("Mesh", "", str(ref["name"]))
            if mesh is None:
                raise Unresolved(f"{obj.label}: meshRef names Mesh {ref['name']}, not found")
            return mesh
        labels = self.namespace_labels(obj.namespace)
        matches = [
            m for m in self.of_kind("Mesh") if selects(m.spec.get("namespaceSelector"), labels)
        ]
        if not matches:
            raise Unresolved(
                f"{obj.label}: failed to find matching mesh for namespace: {obj.namespace}, "
                "expecting 1 but found 0 (label the Namespace to match a Mesh's "
                "namespaceSelector)"
            )
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches)
            raise ManifestError(
                f"{obj.label}: found multiple matching meshes for namespace: {obj.namespace}, "
                f"expecting 1 but found {len(matches)}: {names}"
            )
        return matches[0]

    def gateway_of(self, route: KubeObject) -> KubeObject:
        """A GatewayRoute's VirtualGateway: ``virtualGatewayRef``, else the one gateway
        whose namespace and gateway-route selectors both match the route."""
        ref = route.spec.get("virtualGatewayRef")
        if isinstance(ref, dict) and ref.get("name"):
            namespace = str(ref.get("namespace") or route.namespace)
            gateway = self.get("VirtualGateway", namespace, str(ref["name"]))
            if gateway is None:
                raise Unresolved(
                    f"{route.label}: virtualGatewayRef names VirtualGateway "
                    f"{namespace}/{ref['name']}, not found"
                )
            return gateway
        labels = self.namespace_labels(route.namespace)
        matches = [
            g
            for g in self.of_kind("VirtualGateway")
            if selects(g.spec.get("namespaceSelector"), labels)
            and _route_selector_matches(g.spec.get("gatewayRouteSelector"), route.labels)
        ]
        if len(matches) != 1:
            raise Unresolved(
                f"{route.label}: failed to find matching virtualGateway for gatewayRoute: "
                f"{route.name}, expecting 1 but found {len(matches)}"
            )
        return matches[0]

    # -- references ------------------------------------------------------------------------
    def resolve(self, obj: KubeObject, field_name: str, value: Any, kind: str) -> str:
        """The App Mesh name a ``*Ref`` or ``*ARN`` field points at."""
        if field_name.endswith("ARN"):
            if not isinstance(value, str) or "/" not in value:
                raise ManifestError(f"{obj.label}: {field_name} {value!r} is not an ARN")
            return value.rsplit("/", 1)[1]
        if not isinstance(value, dict) or not value.get("name"):
            raise ManifestError(f"{obj.label}: {field_name} needs a name")
        namespace = str(value.get("namespace") or obj.namespace)
        target = self.get(kind, namespace, str(value["name"]))
        if target is None:
            raise Unresolved(
                f"{obj.label}: failed to resolve {field_name} {namespace}/{value['name']}: "
                f"{kind} not found"
            )
        return aws_name(target)


def _route_selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """A gateway without a ``gatewayRouteSelector`` takes every route of its namespaces."""
    return True if selector is None else selects(selector, labels)


# -- conversion -------------------------------------------------------------------------------
def desired(obj: KubeObject, cluster: Cluster) -> Desired | None:
    """What App Mesh resource ``obj`` asks for (``None`` for Namespace and BackendGroup,
    which only shape other objects)."""
    converter = _CONVERTERS.get(obj.kind)
    return None if converter is None else converter(obj, cluster)


def _mesh(obj: KubeObject, _cluster: Cluster) -> Desired:
    spec = _without(obj.spec, "awsName", "namespaceSelector", "meshOwner")
    if "meshServiceDiscovery" in spec:
        spec["serviceDiscovery"] = spec.pop("meshServiceDiscovery")
    owner = obj.spec.get("meshOwner")
    return Desired("mesh", aws_name(obj), aws_name(obj), _api_spec("mesh", spec, obj), owner)


def _member(obj: KubeObject, cluster: Cluster) -> tuple[str, str | None]:
    mesh = cluster.mesh_of(obj)
    return aws_name(mesh), mesh.spec.get("meshOwner")


def _virtual_node(obj: KubeObject, cluster: Cluster) -> Desired:
    mesh, owner = _member(obj, cluster)
    spec = _without(obj.spec, "awsName", "meshRef", "podSelector", "backendGroups")
    spec = _references(spec, obj, cluster)
    extra = _backend_group_services(obj, cluster)
    if extra:
        listed = {
            (b.get("virtualService") or {}).get("virtualServiceName")
            for b in spec.get("backends") or []
        }
        spec["backends"] = [*(spec.get("backends") or [])] + [
            {"virtualService": {"virtualServiceName": name}} for name in extra if name not in listed
        ]
    return Desired("virtualNode", mesh, aws_name(obj), _api_spec("virtualNode", spec, obj), owner)


def _backend_group_services(obj: KubeObject, cluster: Cluster) -> list[str]:
    """App Mesh names of the VirtualServices a node's ``backendGroups`` stand for."""
    names: list[str] = []
    for ref in obj.spec.get("backendGroups") or []:
        if not isinstance(ref, dict) or not ref.get("name"):
            raise ManifestError(f"{obj.label}: backendGroups entries need a name")
        namespace = str(ref.get("namespace") or obj.namespace)
        if ref["name"] == "*":  # every VirtualService of that namespace
            names += [
                aws_name(s) for s in cluster.of_kind("VirtualService") if s.namespace == namespace
            ]
            continue
        group = cluster.get("BackendGroup", namespace, str(ref["name"]))
        if group is None:
            raise Unresolved(
                f"{obj.label}: failed to resolve backendGroup {namespace}/{ref['name']}"
            )
        for service in group.spec.get("virtualservices") or []:
            names.append(cluster.resolve(group, "virtualServiceRef", service, "VirtualService"))
    return names


def _virtual_router(obj: KubeObject, cluster: Cluster) -> Desired:
    mesh, owner = _member(obj, cluster)
    routes = obj.spec.get("routes") or []
    spec = _without(obj.spec, "awsName", "meshRef", "routes")
    router = Desired(
        "virtualRouter", mesh, aws_name(obj), _api_spec("virtualRouter", spec, obj), owner
    )
    seen: set[str] = set()
    for route in routes:
        if not isinstance(route, dict) or not route.get("name"):
            raise ManifestError(f"{obj.label}: every route needs a name")
        name = str(route["name"])
        if name in seen:
            raise ManifestError(f"{obj.label}: route {name} is listed twice")
        seen.add(name)
        body = _references(_without(route, "name"), obj, cluster)
        router.routes.append(
            Desired("route", mesh, name, _api_spec("route", body, obj), owner, router.name)
        )
    return router


def _virtual_service(obj: KubeObject, cluster: Cluster) -> Desired:
    mesh, owner = _member(obj, cluster)
    spec = _references(_without(obj.spec, "awsName", "meshRef"), obj, cluster)
    return Desired(
        "virtualService", mesh, aws_name(obj), _api_spec("virtualService", spec, obj), owner
    )


def _virtual_gateway(obj: KubeObject, cluster: Cluster) -> Desired:
    mesh, owner = _member(obj, cluster)
    spec = _without(
        obj.spec, "awsName", "meshRef", "namespaceSelector", "gatewayRouteSelector", "podSelector"
    )
    return Desired(
        "virtualGateway", mesh, aws_name(obj), _api_spec("virtualGateway", spec, obj), owner
    )


def _gateway_route(obj: KubeObject, cluster: Cluster) -> Desired:
    gateway = cluster.gateway_of(obj)
    mesh, owner = _member(gateway, cluster)
    spec = _references(_without(obj.spec, "awsName", "meshRef", "virtualGatewayRef"), obj, cluster)
    return Desired(
        "gatewayRoute",
        mesh,
        aws_name(obj),
        _api_spec("gatewayRoute", spec, obj),
        owner,
        aws_name(gateway),
    )


_CONVERTERS: dict[str, Callable[[KubeObject, Cluster], Desired]] = {
    "Mesh": _mesh,
    "VirtualNode": _virtual_node,
    "VirtualRouter": _virtual_router,
    "VirtualService": _virtual_service,
    "VirtualGateway": _virtual_gateway,
    "GatewayRoute": _gateway_route,
}


def app_mesh_kind(kind: str) -> str | None:
    return _APP_MESH_KIND.get(kind)


# -- helpers ----------------------------------------------------------------------------------
def _without(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in keys}


def _references(value: Any, obj: KubeObject, cluster: Cluster) -> Any:
    """Replace every ``*Ref`` / ``*ARN`` reference with the App Mesh name it resolves to."""
    if isinstance(value, list):
        return [_references(item, obj, cluster) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _REFERENCES:
            kind, target = _REFERENCES[key]
            if target is None:  # a weighted target says virtualNode, a provider virtualNodeName
                target = "virtualNode" if "weight" in value else "virtualNodeName"
            out[target] = cluster.resolve(obj, key, item, kind)
        else:
            out[key] = _references(item, obj, cluster)
    return out


def _api_spec(kind: str, spec: dict[str, Any], obj: KubeObject) -> dict[str, Any]:
    operation = service_model().operation_model(_SPEC_OPERATIONS[kind])
    assert operation.input_shape is not None
    shape = operation.input_shape.members["spec"]
    converted = _to_shape(spec, shape, "spec", obj)
    assert isinstance(converted, dict)
    return converted


def _to_shape(value: Any, shape: Shape, path: str, obj: KubeObject) -> Any:
    """``value`` with every key spelled as botocore's ``shape`` spells it."""
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            raise ManifestError(f"{obj.label}: {path} must be an object")
        members = {name.lower(): name for name in shape.members}
        out = {}
        for key, item in value.items():
            member = members.get(key.lower())
            if member is None:
                raise ManifestError(f"{obj.label}: unknown field {path}.{key}")
            out[member] = _to_shape(item, shape.members[member], f"{path}.{member}", obj)
        return out
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            raise ManifestError(f"{obj.label}: {path} must be a list")
        return [_to_shape(v, shape.member, f"{path}[{i}]", obj) for i, v in enumerate(value)]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {k: _to_shape(v, shape.value, f"{path}.{k}", obj) for k, v in value.items()}
    return value
