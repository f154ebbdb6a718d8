"""Short words for App Mesh spec fragments: ``http:8080``, ``prefix /color``, ``dns a.local``.

A spec is deep JSON; a person scanning a mesh wants the few facts that decide where traffic
goes. The tree, the console graph and its tooltips all use these words, so one spelling of a
match or a listener is learnt once.
"""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]

ROUTE_TYPES = ("httpRoute", "http2Route", "grpcRoute", "tcpRoute")
_ROUTE_WORDS = {"httpRoute": "http", "http2Route": "http2", "grpcRoute": "grpc", "tcpRoute": "tcp"}


def listeners(spec: Spec) -> str:
    """``http:8080, tcp:9000`` (with ``+health``/``+tls`` when configured)."""
    words = []
    for listener in spec.get("listeners") or ():
        mapping = listener.get("portMapping") or {}
        word = f"{mapping.get('protocol', '?')}:{mapping.get('port', '?')}"
        extras = [name for name in ("healthCheck", "tls") if listener.get(name)]
        words.append(word + "".join(f" +{_short(extra)}" for extra in extras))
    return ", ".join(words) or "none"


def _short(name: str) -> str:
    return {"healthCheck": "health"}.get(name, name)


def route_type(spec: Spec) -> tuple[str, Spec]:
    """Which kind of route this is (``http``, ``grpc``, ...) and its body."""
    for key in ROUTE_TYPES:
        if spec.get(key):
            return _ROUTE_WORDS[key], spec[key]
    return "?", {}


def match(body: Spec) -> str:
    """A route or gateway-route match in a few words: ``prefix /color GET host *.local``."""
    found = body.get("match") or {}
    words: list[str] = []
    if "prefix" in found:
        words.append(f"prefix {found['prefix']}")
    path = found.get("path") or {}
    words += [f"path {'=' if kind == 'exact' else '~'} {path[kind]}" for kind in path]
    if found.get("method"):
        words.append(str(found["method"]))
    hostname = found.get("hostname") or {}
    words += [f"host {'*' + v if kind == 'suffix' else v}" for kind, v in hostname.items()]
    if found.get("serviceName"):
        words.append(f"service {found['serviceName']}")
    if found.get("methodName"):
        words.append(f"method {found['methodName']}")
    words += [f"header {header.get('name')}" for header in found.get("headers") or ()]
    words += [f"metadata {item.get('name')}" for item in found.get("metadata") or ()]
    words += [f"query {item.get('name')}" for item in found.get("queryParameters") or ()]
    if found.get("port"):
        words.append(f"port {found['port']}")
    return " ".join(words) or "any"


def route_summary(spec: Spec) -> str:
    """``http prefix /`` plus the priority when set: what a route catches."""
    kind, body = route_type(spec)
    text = f"{kind} {match(body)}"
    if spec.get("priority") is not None:
        text += f" (priority {spec['priority']})"
    return text


def weighted_targets(spec: Spec) -> list[dict[str, Any]]:
    """``[{"node", "weight", "percent"}]``: where a route sends traffic and how much of it."""
    _kind, body = route_type(spec)
    targets = (body.get("action") or {}).get("weightedTargets") or []
    total = sum(int(target.get("weight") or 0) for target in targets)
    return [
        {
            "node": target.get("virtualNode"),
            "weight": int(target.get("weight") or 0),
            "percent": round(100 * int(target.get("weight") or 0) / total) if total else 0,
        }
        for target in targets
    ]


def gateway_target(spec: Spec) -> str | None:
    """The virtual service a gateway route sends to."""
    _kind, body = route_type(spec)
    target = (body.get("action") or {}).get("target") or {}
    return (target.get("virtualService") or {}).get("virtualServiceName")


def provider(spec: Spec) -> tuple[str, str] | None:
    """``("router", name)`` or ``("node", name)``: who answers for a virtual service."""
    found = spec.get("provider") or {}
    if found.get("virtualRouter"):
        return "router", found["virtualRouter"].get("virtualRouterName")
    if found.get("virtualNode"):
        return "node", found["virtualNode"].get("virtualNodeName")
    return None


def discovery(spec: Spec) -> str:
    """``dns a.mesh.local`` or ``cloudmap ns/service``; ``none`` for a node only calling out."""
    found = spec.get("serviceDiscovery") or {}
    if found.get("dns"):
        return f"dns {found['dns'].get('hostname')}"
    if found.get("awsCloudMap"):
        cloud = found["awsCloudMap"]
        return f"cloudmap {cloud.get('namespaceName')}/{cloud.get('serviceName')}"
    return "none"


def backends(spec: Spec) -> list[str]:
    """The virtual services a node may call."""
    names = [
        (item.get("virtualService") or {}).get("virtualServiceName")
        for item in spec.get("backends") or ()
    ]
    return [name for name in names if isinstance(name, str)]


def egress(mesh_spec: Spec) -> str:
    return ((mesh_spec.get("egressFilter") or {}).get("type")) or "DROP_ALL"
