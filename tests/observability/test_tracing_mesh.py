"""X-Ray tracing across a live mesh: gateway -> node A (an X-Ray SDK app) -> node B.

Every proxy runs with ``ENABLE_ENVOY_XRAY_TRACING=1`` and sends to the X-Ray daemon of the
``server`` fixture; the traces are read back with boto3's xray client, as the account and
region that daemon writes under.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from appmesh_api.settings import Settings
from appmesh_api.xray.destinations import environment_region, local_account
from tests.conftest import free_port, make_client, new_account
from tests.mesh.harness import Mesh, get

APP = str(Path(__file__).with_name("traced_app.py"))
PROXY = "AWS::AppMesh::Proxy"


def until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the mesh never reached the expected state"
        time.sleep(0.05)


def node_spec(port: int, backends: tuple[str, ...] = ()) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"node-{port}.mesh.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


@pytest.fixture(scope="module")
def traced(server, tmp_path_factory):
    """Gateway ``front`` routes everything to a.local (node ``a``, whose app uses the
    X-Ray SDK and calls b.local); b.local is router ``b`` to node ``b`` (a plain app)."""
    account, name = new_account(), f"traced-{secrets.token_hex(3)}"
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, name, tmp_path_factory.mktemp("traced"))
    env = {"ENABLE_ENVOY_XRAY_TRACING": "1", "XRAY_DAEMON_PORT": str(server.xray_daemon_port),
           "XRAY_SAMPLING_RATE": "1"}  # fmt: skip
    try:
        appmesh.create_mesh(meshName=name)
        port_a = mesh.app("app-a", script=APP, args=(server.xray_daemon_port,))
        port_b = mesh.app("app-b", script=APP)
        appmesh.create_virtual_node(
            meshName=name, virtualNodeName="a", spec=node_spec(port_a, ("b.local",))
        )
        appmesh.create_virtual_node(meshName=name, virtualNodeName="b", spec=node_spec(port_b))
        router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
        appmesh.create_virtual_router(meshName=name, virtualRouterName="b", spec=router)
        targets = [{"virtualNode": "b", "weight": 1}]
        appmesh.create_route(
            meshName=name,
            virtualRouterName="b",
            routeName="all",
            spec={"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}},
        )
        providers = {"a.local": {"virtualNode": {"virtualNodeName": "a"}},
                     "b.local": {"virtualRouter": {"virtualRouterName": "b"}}}  # fmt: skip
        for service, provider in providers.items():
            appmesh.create_virtual_service(
                meshName=name, virtualServiceName=service, spec={"provider": provider}
            )
        gateway_port = free_port()
        listener = {"portMapping": {"port": gateway_port, "protocol": "http"}}
        appmesh.create_virtual_gateway(
            meshName=name, virtualGatewayName="front", spec={"listeners": [listener]}
        )
        action = {"target": {"virtualService": {"virtualServiceName": "a.local"}}}
        appmesh.create_gateway_route(
            meshName=name,
            virtualGatewayName="front",
            gatewayRouteName="to-a",
            spec={"httpRoute": {"match": {"prefix": "/"}, "action": action}},
        )
        proxies = {node: mesh.proxy(node, env=env) for node in ("a", "b")}
        proxies["front"] = mesh.proxy("front", kind="virtualGateway", env=env)
        world = {"mesh": name, "gateway": gateway_port, "a_egress": proxies["a"].egress}
        until(lambda: chain(world, {})[0] == 200, timeout=20)
        yield world
    finally:
        mesh.close()


@pytest.fixture(scope="module")
def xray(server):
    """The xray client for the account and region the server's daemon writes under."""
    return boto3.client(
        "xray",
        endpoint_url=server.endpoint,
        region_name=environment_region(),
        aws_access_key_id=local_account(Settings.from_environment()),
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


def chain(world: dict, headers: dict[str, str], path: str = "/chain") -> tuple[int, str]:
    """A request to the gateway that A forwards to b.local through its sidecar."""
    query = f"?next={world['a_egress']}/b.local:8080" if path == "/chain" else ""
    status, _, body = get(world["gateway"], path + query, "gateway.example", headers)
    return status, body


def new_root() -> str:
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def documents(xray, trace_id: str) -> list[dict]:
    traces = xray.batch_get_traces(TraceIds=[trace_id])["Traces"]
    segments = traces[0]["Segments"] if traces else []
    return [json.loads(segment["Document"]) for segment in segments]


def wait_for_segments(xray, trace_id: str, count: int) -> list[dict]:
    found: list[dict] = []

    def complete() -> bool:
        found[:] = documents(xray, trace_id)
        return len(found) >= count

    try:
        until(complete, timeout=15)
    except AssertionError:
        raise AssertionError(f"{len(found)} of {count} segments: {found}") from None
    return found


def by_name(found: list[dict], mesh: str) -> dict[str, list[dict]]:
    named: dict[str, list[dict]] = {}
    for document in found:
        named.setdefault(document["name"].replace(f"{mesh}/", "mesh/"), []).append(document)
    return named


def test_a_request_is_one_trace_with_a_segment_per_hop(traced, xray):
    root = new_root()
    status, body = chain(traced, {"X-Amzn-Trace-Id": f"Root={root}"})
    assert status == 200
    seen = json.loads(body)
    assert [hop["name"] for hop in seen] == ["app-a", "app-b"]
    found = wait_for_segments(xray, root, 5)
    named = by_name(found, traced["mesh"])
    assert sorted(named) == ["app-a", "mesh/a", "mesh/b", "mesh/front"]
    (gateway,), (app_a,), (node_b,) = named["mesh/front"], named["app-a"], named["mesh/b"]
    a_in, a_out = sorted(named["mesh/a"], key=lambda s: s["start_time"])
    mesh_name = traced["mesh"]
    for segment in (gateway, a_in, a_out, node_b):
        assert segment["origin"] == PROXY
        assert segment["trace_id"] == root
        assert segment["http"]["request"]["method"] == "GET"
        assert segment["http"]["response"]["status"] == 200
        assert segment["http"]["request"]["client_ip"] == "127.0.0.1"
        assert not segment.get("fault") and not segment.get("error")
        assert segment["start_time"] <= segment["end_time"]
        (call,) = segment["subsegments"]
        assert call["namespace"] == "remote"
        assert call["http"]["response"]["status"] == 200
        assert segment["start_time"] <= call["start_time"] <= call["end_time"]
        assert call["end_time"] <= segment["end_time"]
    # The image's bootstrap names a gateway virtual_node_name too (its agent's comment:
    # X-Ray has no virtual_gateway_name); the proxy writes its segment_fields verbatim.
    assert gateway["aws"]["app_mesh"] == {"mesh_name": mesh_name, "virtual_node_name": "front"}
    assert a_in["aws"]["app_mesh"] == {"mesh_name": mesh_name, "virtual_node_name": "a"}
    assert node_b["aws"]["app_mesh"] == {"mesh_name": mesh_name, "virtual_node_name": "b"}
    assert gateway["http"]["request"]["url"].endswith(
        f"/chain?next={traced['a_egress']}/b.local:8080"
    )
    assert gateway["http"]["request"]["user_agent"].startswith("Python-urllib")
    # Parent links: each hop hangs under the remote call that reached it.
    assert "parent_id" not in gateway
    assert [s["name"] for s in gateway["subsegments"]] == ["a.local"]
    assert a_in["parent_id"] == gateway["subsegments"][0]["id"]
    assert [s["name"] for s in a_in["subsegments"]] == ["a"]
    assert app_a["parent_id"] == a_in["subsegments"][0]["id"]
    (sdk_call,) = [s for s in app_a["subsegments"] if s.get("namespace") == "remote"]
    assert a_out["parent_id"] == sdk_call["id"]
    assert [s["name"] for s in a_out["subsegments"]] == ["b.local"]
    assert node_b["parent_id"] == a_out["subsegments"][0]["id"]
    assert [s["name"] for s in node_b["subsegments"]] == ["b"]
    # The header each app received: the trace, its proxy's remote call as Parent, sampled.
    assert seen[0]["trace"] == f"Root={root};Parent={a_in['subsegments'][0]['id']};Sampled=1"
    assert seen[1]["trace"] == f"Root={root};Parent={node_b['subsegments'][0]['id']};Sampled=1"


def edges(services: list[dict], mesh: str) -> set[tuple[str, str]]:
    """``("name:type", "name:type")`` per edge, with the mesh name shortened to ``mesh``."""
    label = {
        s["ReferenceId"]: f"{s['Name'].replace(mesh + '/', 'mesh/')}:{s.get('Type')}"
        for s in services
    }
    return {
        (label[s["ReferenceId"]], label[e["ReferenceId"]])
        for s in services
        for e in s.get("Edges", [])
    }


EXPECTED_EDGES = {
    ("mesh/front:client", f"mesh/front:{PROXY}"),
    (f"mesh/front:{PROXY}", f"mesh/a:{PROXY}"),
    (f"mesh/a:{PROXY}", "app-a:None"),
    ("app-a:None", f"mesh/a:{PROXY}"),
    (f"mesh/a:{PROXY}", f"mesh/b:{PROXY}"),
    (f"mesh/b:{PROXY}", "b:remote"),
}


def test_the_service_graph_shows_the_hops(traced, xray):
    root = new_root()
    assert chain(traced, {"X-Amzn-Trace-Id": f"Root={root}"})[0] == 200
    wait_for_segments(xray, root, 5)
    trace_graph = xray.get_trace_graph(TraceIds=[root])["Services"]
    assert edges(trace_graph, traced["mesh"]) == EXPECTED_EDGES
    now = time.time()
    services = xray.get_service_graph(StartTime=now - 300, EndTime=now + 5)["Services"]
    ours = [s for s in services if traced["mesh"] in s["Name"] or s["Name"] in ("app-a", "b")]
    assert edges(ours, traced["mesh"]) >= EXPECTED_EDGES


def test_an_unsampled_request_records_nothing_and_says_so_downstream(traced, xray):
    unsampled, marker = new_root(), new_root()
    status, body = chain(traced, {"X-Amzn-Trace-Id": f"Root={unsampled};Sampled=0"})
    assert status == 200
    seen = json.loads(body)  # app-a's X-Ray SDK passes on a dummy root, still unsampled
    assert seen[0]["trace"] == f"Root={unsampled};Sampled=0"
    assert all(hop["trace"].endswith("Sampled=0") for hop in seen)
    assert chain(traced, {"X-Amzn-Trace-Id": f"Root={marker}"})[0] == 200
    wait_for_segments(xray, marker, 5)  # sent after the unsampled one, through the same daemon
    assert documents(xray, unsampled) == []


def test_errors_are_flagged_where_they_happen(traced, xray):
    root = new_root()
    status, _ = chain(traced, {"X-Amzn-Trace-Id": f"Root={root}"}, "/status/404")
    assert status == 404
    named = by_name(wait_for_segments(xray, root, 3), traced["mesh"])
    (gateway,), (a_in,) = named["mesh/front"], named["mesh/a"]
    for segment in (gateway, a_in):
        assert segment["error"] is True and "fault" not in segment
        assert segment["http"]["response"]["status"] == 404
    now, service = time.time(), f"{traced['mesh']}/front"
    summaries = xray.get_trace_summaries(
        StartTime=now - 120,
        EndTime=now + 5,
        FilterExpression=f'http.status = 404 AND service("{service}")',
    )["TraceSummaries"]
    assert root in [s["Id"] for s in summaries]
