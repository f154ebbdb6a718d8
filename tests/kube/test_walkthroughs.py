"""aws-app-mesh-examples' EKS walkthroughs (``howto-k8s-*``), as their users applied them.

Each manifest is the walkthrough's own ``manifest.yaml.template`` (``walkthroughs/``,
see its README), its ``${VAR}`` placeholders filled in as the walkthrough's deploy
script does. It is applied with ``appmesh-local kube apply --skip-other-kinds`` (the
Deployments and Services are skipped and named), every App Mesh object must become
Active, and the App Mesh resources are checked through boto3 against the manifest:
listeners as written, and per walkthrough the feature it demonstrates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_client, new_account
from tests.kube.test_kube_cli import kube

WALKTHROUGHS = Path(__file__).parent / "walkthroughs"
NAMES = sorted(p.name.removesuffix(".yaml.template") for p in WALKTHROUGHS.glob("*.template"))
SKIPPED = "skipped (not an App Mesh kind: appmesh-local runs no workloads)"


def render(name: str, template: str | None = None, **changes: str) -> str:
    """The walkthrough's manifest (or its other ``template``, a file under ``walkthroughs/``)
    with the walkthrough's variables set; images are never run here."""
    values = {
        "APP_NAMESPACE": f"howto-k8s-{name}",
        "MESH_NAME": f"howto-k8s-{name}",
        "AWS_ACCOUNT_ID": "111122223333",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CLOUDMAP_NAMESPACE": f"{name}.pvt.aws.local",
        "ENVOY_IMAGE": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.12.1-prod",
        **changes,
    }
    text = (WALKTHROUGHS / (template or f"{name}.yaml.template")).read_text()
    return re.sub(
        r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: values.get(m[1], f"example/{m[1].lower()}"), text
    )


def app_mesh_documents(text: str) -> list[dict]:
    return [
        d for d in yaml.safe_load_all(text) if d and d["apiVersion"].startswith("appmesh.k8s.aws")
    ]


def aws_name(document: dict) -> str:
    """The App Mesh name the controller gave the object (``awsName`` or its default)."""
    if document["spec"].get("awsName"):
        return str(document["spec"]["awsName"])
    name, namespace = document["metadata"]["name"], document["metadata"].get("namespace")
    if document["kind"] == "Mesh":
        return str(name)
    return f"{name}.{namespace}" if document["kind"] == "VirtualService" else f"{name}_{namespace}"


def without_health_checks(listeners: list[dict]) -> list[dict]:
    """Listeners as compared: App Mesh fills in health check defaults the manifest leaves out."""
    return [{k: v for k, v in listener.items() if k != "healthCheck"} for listener in listeners]


@pytest.fixture
def walkthrough(server, tmp_path):
    """Apply one walkthrough in an account of its own (its EKS cluster); the App Mesh client."""

    def apply(name: str, text: str | None = None):
        account = new_account()
        path = tmp_path / f"{name}.yaml"
        path.write_text(text or render(name))
        result = kube(server, account, "apply", "--skip-other-kinds", "-f", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        return result, account, make_client(server.endpoint, "appmesh", account)

    return apply


@pytest.mark.parametrize("name", NAMES)
def test_walkthrough_applies_and_every_app_mesh_object_is_active(server, walkthrough, name):
    text = render(name) if name != "retry-policy" else with_retries_enabled()
    result, account, appmesh = walkthrough(name, text)
    documents = list(yaml.safe_load_all(text))
    others = [d for d in documents if d and not d["apiVersion"].startswith("appmesh")]
    others = [d for d in others if d["kind"] != "Namespace"]
    assert result.stdout.count(SKIPPED) == len(others) > 0
    for other in others:  # kubectl's names: deployment.apps/front, service/color
        group = other["apiVersion"].rpartition("/")[0]
        resource = other["kind"].lower() + (f".{group}" if group else "")
        assert f"{resource}/{other['metadata']['name']} {SKIPPED}" in result.stdout

    listed = kube(server, account, "get", "-o", "json")
    items = {(i["kind"], i["metadata"]["name"]): i for i in json.loads(listed.stdout)["items"]}
    mesh = next(aws_name(d) for d in app_mesh_documents(text) if d["kind"] == "Mesh")
    for document in app_mesh_documents(text):
        item = items[(document["kind"], document["metadata"]["name"])]
        assert item["status"]["conditions"][0]["status"] == "True", item["status"]
        _check_listeners(appmesh, mesh, document)
    _check_gateway_routes(appmesh, mesh, app_mesh_documents(text))
    CHECKS[name](appmesh, mesh, f"howto-k8s-{name}")


# The walkthrough's gatewayroutes/ templates in the order its scripts apply them: deploy.sh
# applies prefix-match after the manifest, then `./gwroute_setup.sh all` the others.
GATEWAY_ROUTE_STEPS = [
    "prefix-match",
    "path-match",
    "header-match",
    "query-match",
    "method-match",
    "rewrite-prefix",
    "rewrite-path",
]


def test_http_ingress_v2_gateway_routes_are_active_and_as_written(server, tmp_path):
    """howto-k8s-http-ingress-v2's seven gateway routes (prefix, exact path, header, query
    parameter and method matches; prefix and path rewrites), applied one file at a time on
    top of the manifest as its scripts do: each is Active and App Mesh holds its spec."""
    name = "http-ingress-v2"
    account = new_account()
    steps = [("manifest", render(name))] + [
        (step, render(name, f"{name}-gatewayroutes/{step}.yaml.template"))
        for step in GATEWAY_ROUTE_STEPS
    ]
    for step, text in steps:
        path = tmp_path / f"{step}.yaml"
        path.write_text(text)
        result = kube(server, account, "apply", "--skip-other-kinds", "-f", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
    documents = [d for _, text in steps for d in app_mesh_documents(text)]
    listed = json.loads(kube(server, account, "get", "gatewayroutes", "-o", "json").stdout)
    statuses = {i["metadata"]["name"]: i["status"] for i in listed["items"]}
    assert sorted(statuses) == sorted(GATEWAY_ROUTE_STEPS)
    for route, status in statuses.items():
        assert status["conditions"][0]["status"] == "True", (route, status)
    mesh = next(aws_name(d) for d in documents if d["kind"] == "Mesh")
    appmesh = make_client(server.endpoint, "appmesh", account)
    assert _check_gateway_routes(appmesh, mesh, documents) == len(GATEWAY_ROUTE_STEPS)


# howto-k8s-grpc-ingress-v2's README has the user `kubectl edit` the metadata-match route's
# grpcRoute.match three times: another service name, an exact metadata match, then a
# metadata name alone. (Its edits show `awsName: metadata-match_howto-k8s-grpc-v2`, from an
# older manifest; the vendored one sets none, so the edited object keeps the default.)
GRPC_MATCH_EDITS = [
    {"serviceName": "Hello2"},
    {"metadata": [{"match": {"exact": "iphone"}, "name": "device"}], "serviceName": "Hello"},
    {"metadata": [{"name": "device"}], "serviceName": "Hello"},
]


@pytest.mark.parametrize("match", GRPC_MATCH_EDITS, ids=["service", "exact", "name-only"])
def test_grpc_ingress_v2_edited_gateway_route_is_active_and_as_written(
    server, walkthrough, tmp_path, match
):
    name = "grpc-ingress-v2"
    _, account, appmesh = walkthrough(name)
    documents = app_mesh_documents(render(name))
    route = next(d for d in documents if d["kind"] == "GatewayRoute")
    route["spec"]["grpcRoute"]["match"] = match
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(route))
    result = kube(server, account, "apply", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gatewayroute.appmesh.k8s.aws/metadata-match configured" in result.stdout
    listed = kube(server, account, "get", "gatewayroutes", "-o", "json")
    [item] = json.loads(listed.stdout)["items"]
    assert item["status"]["conditions"][0]["status"] == "True", item["status"]
    mesh = next(aws_name(d) for d in documents if d["kind"] == "Mesh")
    assert _check_gateway_routes(appmesh, mesh, documents) == 1


def test_without_the_flag_a_walkthrough_is_refused_and_nothing_is_made(server, tmp_path):
    account = new_account()
    path = tmp_path / "http-headers.yaml"
    path.write_text(render("http-headers"))
    result = kube(server, account, "apply", "-f", str(path))
    assert result.returncode == 1
    assert "appmesh-local is not a Kubernetes cluster" in result.stderr
    assert "pass --skip-other-kinds" in result.stderr
    assert make_client(server.endpoint, "appmesh", account).list_meshes()["meshes"] == []


def test_delete_with_the_flag_removes_the_app_mesh_objects(server, walkthrough, tmp_path):
    _, account, appmesh = walkthrough("grpc")
    path = str(tmp_path / "grpc.yaml")
    deleted = kube(server, account, "delete", "--skip-other-kinds", "-f", path)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deployment.apps/server {SKIPPED}" in deleted.stdout
    assert "mesh.appmesh.k8s.aws/howto-k8s-grpc deleted" in deleted.stdout
    assert appmesh.list_meshes()["meshes"] == []


def with_retries_enabled() -> str:
    """The retry-policy walkthrough's second step: its README has the user uncomment the
    route's ``retryPolicy`` and apply again."""
    text = render("retry-policy")
    text = text.replace("        #UNCOMMENT below to enable retries\n", "")
    return re.sub(r"^        #(retryPolicy:|  .*)$", r"        \1", text, flags=re.M)


def _check_listeners(appmesh, mesh: str, document: dict) -> None:
    """Node and gateway listeners (ports, TLS, timeouts, outlier detection, connection pools)
    are what the manifest says, field for field."""
    if document["kind"] == "VirtualNode":
        spec = appmesh.describe_virtual_node(meshName=mesh, virtualNodeName=aws_name(document))
        described = spec["virtualNode"]["spec"]
    elif document["kind"] == "VirtualGateway":
        spec = appmesh.describe_virtual_gateway(
            meshName=mesh, virtualGatewayName=aws_name(document)
        )
        described = spec["virtualGateway"]["spec"]
    else:
        return
    expected = without_health_checks(document["spec"]["listeners"])
    assert without_health_checks(described["listeners"]) == expected, document["metadata"]


def _check_gateway_routes(appmesh, mesh: str, documents: list[dict]) -> int:
    """Every GatewayRoute's App Mesh spec (priority, match, action target and rewrite) is its
    manifest spec with the controller's references resolved; the number checked."""
    routes = [d for d in documents if d["kind"] == "GatewayRoute"]
    if not routes:
        return 0
    gateway = aws_name(next(d for d in documents if d["kind"] == "VirtualGateway"))
    services = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): aws_name(d)
        for d in documents
        if d["kind"] == "VirtualService"
    }
    for route in routes:
        described = appmesh.describe_gateway_route(
            meshName=mesh, virtualGatewayName=gateway, gatewayRouteName=aws_name(route)
        )["gatewayRoute"]
        assert described["status"]["status"] == "ACTIVE", described
        spec = {k: v for k, v in route["spec"].items() if k not in ("awsName", "meshRef")}
        expected = _resolved(spec, route["metadata"]["namespace"], services)
        assert described["spec"] == expected, route["metadata"]["name"]
    return len(routes)


def _resolved(value: Any, namespace: str, services: dict[tuple[str, str], str]) -> Any:
    """``value`` with each ``virtualServiceRef`` replaced by the App Mesh name it names."""
    if isinstance(value, list):
        return [_resolved(v, namespace, services) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key == "virtualServiceRef":
            ref = (item.get("namespace") or namespace, item["name"])
            out["virtualServiceName"] = services[ref]
        else:
            out[key] = _resolved(item, namespace, services)
    return out


def _node(appmesh, mesh: str, name: str, ns: str) -> dict[str, Any]:
    answer = appmesh.describe_virtual_node(meshName=mesh, virtualNodeName=f"{name}_{ns}")
    return dict(answer["virtualNode"]["spec"])


def _route(appmesh, mesh: str, router: str, route: str, ns: str) -> dict[str, Any]:
    answer = appmesh.describe_route(
        meshName=mesh, virtualRouterName=f"{router}_{ns}", routeName=route
    )
    return dict(answer["route"]["spec"])


def _gateway_route(appmesh, mesh: str, name: str, ns: str) -> dict[str, Any]:
    answer = appmesh.describe_gateway_route(
        meshName=mesh, virtualGatewayName=f"ingress-gw_{ns}", gatewayRouteName=f"{name}_{ns}"
    )
    return dict(answer["gatewayRoute"]["spec"])


def _targets(route: dict[str, Any], kind: str = "httpRoute") -> list[tuple[str, int]]:
    return sorted((t["virtualNode"], t["weight"]) for t in route[kind]["action"]["weightedTargets"])


def check_cloudmap(appmesh, mesh: str, ns: str) -> None:
    blue = _node(appmesh, mesh, "colorapp-blue", ns)["serviceDiscovery"]["awsCloudMap"]
    assert blue == {
        "namespaceName": "cloudmap.pvt.aws.local",
        "serviceName": "colorapp",
        "attributes": [{"key": "color", "value": "blue"}],
    }
    route = _route(appmesh, mesh, "colorapp-router", "color-route", ns)
    assert _targets(route) == [(f"colorapp-blue_{ns}", 1), (f"colorapp-red_{ns}", 1)]


def check_connection_pools(appmesh, mesh: str, ns: str) -> None:
    route = _gateway_route(appmesh, mesh, "gateway-route-paths", ns)["httpRoute"]
    assert route["match"]["prefix"] == "/paths"
    service = route["action"]["target"]["virtualService"]["virtualServiceName"]
    assert service == f"color-paths.{ns}.svc.cluster.local"
    assert _route(appmesh, mesh, "color-paths", "color-route-red", ns)["priority"] == 30


def check_egress(appmesh, mesh: str, ns: str) -> None:
    described = appmesh.describe_mesh(meshName=mesh)["mesh"]["spec"]
    assert described["egressFilter"] == {"type": "DROP_ALL"}
    external = "blue.mesh-external.svc.cluster.local"
    service = appmesh.describe_virtual_service(meshName=mesh, virtualServiceName=external)
    provider = service["virtualService"]["spec"]["provider"]
    assert provider == {"virtualNode": {"virtualNodeName": f"blue_{ns}"}}
    backends = _node(appmesh, mesh, "front", ns)["backends"]
    assert backends == [{"virtualService": {"virtualServiceName": external}}]


def check_grpc(appmesh, mesh: str, ns: str) -> None:
    route = _route(appmesh, mesh, "color", "route", ns)
    assert route["grpcRoute"]["match"] == {
        "serviceName": "color.ColorService",
        "methodName": "GetColor",
    }
    assert _targets(route, "grpcRoute") == [(f"server_{ns}", 1)]


def check_grpc_ingress_v2(appmesh, mesh: str, ns: str) -> None:
    route = _gateway_route(appmesh, mesh, "metadata-match", ns)["grpcRoute"]
    assert route["match"]["serviceName"] == "Hello"
    service = route["action"]["target"]["virtualService"]["virtualServiceName"]
    assert service == f"greeter.{ns}.svc.cluster.local"


def check_http_headers(appmesh, mesh: str, ns: str) -> None:
    route = _route(appmesh, mesh, "color", "color-route-green", ns)
    assert route["priority"] == 20
    assert route["httpRoute"]["match"]["headers"] == [
        {"name": "color_header", "match": {"regex": ".*green.*"}}
    ]
    routes = appmesh.list_routes(meshName=mesh, virtualRouterName=f"color_{ns}")["routes"]
    assert len(routes) == 5


def check_http_ingress_v2(appmesh, mesh: str, ns: str) -> None:
    route = _route(appmesh, mesh, "color-paths", "color-route-blue", ns)
    assert route["httpRoute"]["match"]["prefix"] == "/blue"
    service = appmesh.describe_virtual_service(
        meshName=mesh, virtualServiceName=f"color-yellow.{ns}.svc.cluster.local"
    )
    provider = service["virtualService"]["spec"]["provider"]
    assert provider == {"virtualNode": {"virtualNodeName": f"yellow_{ns}"}}


def check_ingress_gateway(appmesh, mesh: str, ns: str) -> None:
    names = appmesh.list_gateway_routes(meshName=mesh, virtualGatewayName=f"ingress-gw_{ns}")
    assert sorted(r["gatewayRouteName"] for r in names["gatewayRoutes"]) == [
        f"gateway-route-headers_{ns}",
        f"gateway-route-paths_{ns}",
    ]
    route = _route(appmesh, mesh, "color-headers", "color-route-blue", ns)
    assert route["httpRoute"]["match"]["headers"][0]["match"] == {"exact": "blue"}


def check_http2(appmesh, mesh: str, ns: str) -> None:
    route = _route(appmesh, mesh, "color", "color-route", ns)
    assert [(n, w) for n, w in _targets(route, "http2Route")] == [
        (f"blue_{ns}", 1),
        (f"green_{ns}", 1),
        (f"red_{ns}", 1),
    ]


def check_mtls_file_based(appmesh, mesh: str, ns: str) -> None:
    tls = _node(appmesh, mesh, "front", ns)["backendDefaults"]["clientPolicy"]["tls"]
    assert tls["certificate"] == {
        "file": {
            "certificateChain": "/certs/front_cert_chain.pem",
            "privateKey": "/certs/front_key.pem",
        }
    }
    assert (
        f"color-blue.{ns}.svc.cluster.local"
        in (tls["validation"]["subjectAlternativeNames"]["match"]["exact"])
    )
    blue = _node(appmesh, mesh, "blue", ns)["listeners"][0]["tls"]
    assert blue["mode"] == "STRICT"
    assert blue["validation"]["trust"] == {"file": {"certificateChain": "/certs/ca_1_cert.pem"}}
    assert "tls" not in _node(appmesh, mesh, "red", ns)["listeners"][0]


def check_outlier_detection(appmesh, mesh: str, ns: str) -> None:
    outlier = _node(appmesh, mesh, "colorapp", ns)["listeners"][0]["outlierDetection"]
    assert outlier["maxServerErrors"] == 5 and outlier["maxEjectionPercent"] == 50
    assert outlier["interval"] == {"value": 10, "unit": "s"}


def check_retry_policy(appmesh, mesh: str, ns: str) -> None:
    retry = _route(appmesh, mesh, "color", "color-route", ns)["httpRoute"]["retryPolicy"]
    assert retry == {
        "maxRetries": 4,
        "perRetryTimeout": {"unit": "ms", "value": 2000},
        "httpRetryEvents": ["server-error"],
    }


def check_timeout_policy(appmesh, mesh: str, ns: str) -> None:
    route = _route(appmesh, mesh, "colorapp-router", "color-route", ns)["httpRoute"]
    assert route["timeout"] == {"perRequest": {"unit": "s", "value": 60}}
    service = appmesh.describe_virtual_service(
        meshName=mesh, virtualServiceName=f"colorapp.{ns}.pvt.aws.local"
    )  # the walkthrough's awsName, not the .svc.cluster.local default
    assert service["virtualService"]["status"]["status"] == "ACTIVE"


def check_tls_file_based(appmesh, mesh: str, ns: str) -> None:
    tls = _node(appmesh, mesh, "front", ns)["backendDefaults"]["clientPolicy"]["tls"]
    assert tls["enforce"] is True
    assert tls["validation"]["trust"]["file"]["certificateChain"].startswith("/certs/")
    green = _node(appmesh, mesh, "green", ns)["listeners"][0]["tls"]
    assert green["certificate"]["file"]["privateKey"] == "/certs/colorapp-green_key.pem"


CHECKS: dict[str, Callable[[Any, str, str], None]] = {
    name: globals()[f"check_{name.replace('-', '_')}"] for name in NAMES
}
