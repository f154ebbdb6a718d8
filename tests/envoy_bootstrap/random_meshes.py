"""Seeded random meshes generated from botocore's App Mesh model itself.

Walking the model's shapes means every member of every spec (every union branch, every
optional field) shows up across enough seeds, without a hand-written list that could
fall behind the API. Names that refer to other resources are drawn from small pools so
references resolve often, and ports from a small set so listeners, routes and targets
line up often; values follow each shape's enum and min/max.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import botocore.session

from envoy_bootstrap.snapshot import MeshSnapshot

from .mesh_factory import MESH, resource

NODES = ["n1", "n2", "n3", "n4"]
ROUTERS = ["r1", "r2"]
SERVICES = ["s1.local", "s2.local", "s3.local", "s4.local"]
GATEWAYS = ["g1"]
PORTS = [80, 8080, 9090]
ACM_CERTS = ["arn:aws:acm:us-east-1:111122223333:certificate/c1"]
PCAS = ["arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/p1"]
ONE_OF = {"RouteSpec": ("httpRoute", "http2Route", "grpcRoute", "tcpRoute"),
          "GatewayRouteSpec": ("httpRoute", "http2Route", "grpcRoute")}  # fmt: skip


@cache
def shapes() -> dict[str, Any]:
    loader = botocore.session.get_session().get_component("data_loader")
    return loader.load_service_model("appmesh", "service-2")["shapes"]


class SpecGenerator:
    """Random values for App Mesh shapes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def value(self, shape_name: str, member: str = "", depth: int = 0) -> Any:
        shape = shapes()[shape_name]
        kind = shape["type"]
        if kind == "structure":
            return self._structure(shape_name, shape, depth)
        if kind == "list":
            low = shape.get("min", 0)
            high = min(shape.get("max", 3), 3)
            count = self.rng.randint(low, max(low, high)) if depth < 6 else low
            return [self.value(shape["member"]["shape"], member, depth + 1) for _ in range(count)]
        if kind == "string":
            return (
                self._enum(shape["enum"]) if "enum" in shape else self._string(shape_name, member)
            )
        if kind in ("integer", "long"):
            return self._number(shape_name, shape)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None

    def _structure(self, name: str, shape: dict, depth: int) -> dict[str, Any]:
        members = shape["members"]
        if shape.get("union") or name in ONE_OF:
            chosen = self._enum(list(ONE_OF.get(name) or members))
            result = {chosen: self.value(members[chosen]["shape"], chosen, depth + 1)}
            if name in ONE_OF and "priority" in members and self.rng.random() < 0.5:
                result["priority"] = self.value(members["priority"]["shape"], "priority")
            return result
        required = set(shape.get("required", ()))
        result = {}
        for key, spec in members.items():
            if key in required or (depth < 6 and self.rng.random() < 0.5):
                result[key] = self.value(spec["shape"], key, depth + 1)
        return result

    def _enum(self, choices: list[str]) -> str:
        """Half the time the first HTTP-ish choice, so that route kinds, listener and
        target protocols agree often enough to produce routes; otherwise uniform."""
        preferred = [c for c in choices if c in ("http", "httpRoute")]
        if preferred and self.rng.random() < 0.5:
            return preferred[0]
        return self.rng.choice(choices)

    def _number(self, shape_name: str, shape: dict) -> int:
        if shape_name in ("PortNumber", "ListenerPort"):
            return self.rng.choice(PORTS)
        low = shape.get("min", 0)
        high = shape.get("max", low + 1000)
        return self.rng.randint(int(low), int(min(high, low + 1000)))

    def _string(self, shape_name: str, member: str) -> str:
        rng = self.rng
        by_member = {
            "virtualServiceName": lambda: rng.choice(SERVICES),
            "virtualNode": lambda: rng.choice(NODES),
            "virtualNodeName": lambda: rng.choice(NODES),
            "virtualRouterName": lambda: rng.choice(ROUTERS),
            "certificateArn": lambda: rng.choice(ACM_CERTS),
            "prefix": lambda: rng.choice(["/", "/a", "/a/", "/b/c/"]),
            "methodName": lambda: rng.choice(["Get", "List"]),
            "namespaceName": lambda: "apps.local",
            "certificateChain": lambda: "/certs/chain.pem",
            "privateKey": lambda: "/certs/key.pem",
            "secretName": lambda: rng.choice(["svc-cert", "spiffe://td/ns/a"]),
            "text": lambda: "%START_TIME% %RESPONSE_CODE%",
            "path": lambda: "/dev/stdout" if shape_name == "FilePath" else "/health",
        }
        by_shape = {
            "Arn": lambda: rng.choice(PCAS),
            "Hostname": lambda: rng.choice(["n.apps.local", "svc.local"]),
            "ExactHostName": lambda: "www.example.com",
            "SuffixHostname": lambda: rng.choice([".example.com", "example.com"]),
            "HttpPathExact": lambda: rng.choice(["/exact", "/a/b"]),
            "HttpPathRegex": lambda: "/v[0-9]+/.*",
            "HttpGatewayRoutePrefix": lambda: "/rewritten/",
            "HeaderName": lambda: rng.choice(["x-team", "x-version", "content-type"]),
            "QueryParameterName": lambda: rng.choice(["q", "debug"]),
            "SubjectAlternativeName": lambda: rng.choice(["n.apps.local", "spiffe://td/ns/b"]),
            "ServiceName": lambda: rng.choice(["pkg.Svc", "other.Api"]),
            "JsonValue": lambda: "%RESPONSE_CODE%",
        }
        maker = by_member.get(member) or by_shape.get(shape_name)
        return maker() if maker else rng.choice(["alpha", "beta", "gamma"])


def random_snapshot(seed: int) -> MeshSnapshot:
    """One random mesh; the same seed always gives the same mesh."""
    rng = random.Random(seed)
    gen = SpecGenerator(rng)
    nodes = {n: resource("virtualNodeName", n, gen.value("VirtualNodeSpec")) for n in NODES}
    routers = {r: resource("virtualRouterName", r, gen.value("VirtualRouterSpec")) for r in ROUTERS}
    routes = {
        r: {
            f"{r}-rt{i}": resource("routeName", f"{r}-rt{i}", gen.value("RouteSpec"))
            for i in range(rng.randint(0, 4))
        }
        for r in ROUTERS
    }
    services = {
        s: resource("virtualServiceName", s, gen.value("VirtualServiceSpec")) for s in SERVICES
    }
    gateways = {
        g: resource("virtualGatewayName", g, gen.value("VirtualGatewaySpec")) for g in GATEWAYS
    }
    gateway_routes = {
        g: {
            f"{g}-gr{i}": resource("gatewayRouteName", f"{g}-gr{i}", gen.value("GatewayRouteSpec"))
            for i in range(rng.randint(0, 4))
        }
        for g in GATEWAYS
    }
    return MeshSnapshot(
        mesh={"meshName": MESH, "spec": gen.value("MeshSpec"), "status": {"status": "ACTIVE"}},
        virtual_nodes=nodes,
        virtual_routers=routers,
        routes=routes,
        virtual_services=services,
        virtual_gateways=gateways,
        gateway_routes=gateway_routes,
        registered_endpoints=_registered(rng),
        certificates=_certificates(rng),
    )


def _registered(rng: random.Random) -> dict[str, tuple[tuple[str, int], ...]]:
    chosen = [n for n in NODES if rng.random() < 0.3]
    return {
        n: tuple((f"10.0.0.{i}", 15000) for i in range(1, rng.randint(1, 3) + 1)) for n in chosen
    }


def _certificates(rng: random.Random) -> dict[str, dict[str, str]]:
    if rng.random() < 0.5:
        return {}
    material = {
        "certificate": "-----LEAF-----",
        "certificateChain": "-----CA-----",
        "privateKey": "-----KEY-----",
    }
    return {arn: material for arn in ACM_CERTS + PCAS}
