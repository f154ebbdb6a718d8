"""The console's page and JSON endpoints over a live server, with a mesh built by boto3."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.api.helpers import share_mesh
from tests.conftest import make_client, new_account
from tests.console.helpers import (
    FRONTEND,
    MESH,
    REPORTS,
    build_demo_mesh,
    connect_proxy,
    crowded_traces,
    get_json,
    send_traces,
)
from tests.xray.helpers import GATEWAY, NODE_A, NODE_B


@pytest.fixture(scope="module")
def demo(server):
    """An account with the demo mesh, three traces and two connected proxies."""
    account = new_account()
    build_demo_mesh(make_client(server.endpoint, "appmesh", account))
    traces = send_traces(make_client(server.endpoint, "xray", account))
    versions = {
        "node-a": connect_proxy(server, account, "node-a", "127.0.0.1:25001"),
        "node-b": connect_proxy(server, account, "node-b", "127.0.0.1:25002", reject=True),
    }
    return {"account": account, "traces": traces, "versions": versions}


def test_the_page_and_its_static_files_are_served(server):
    with urllib.request.urlopen(f"{server.endpoint}/console", timeout=10) as reply:
        assert reply.headers["content-type"].startswith("text/html")
        page = reply.read().decode()
    assert "appmesh-local" in page and "/console/static/app.js" in page
    for name, kind in (("app.js", "javascript"), ("console.css", "text/css")):
        with urllib.request.urlopen(f"{server.endpoint}/console/static/{name}", timeout=10) as r:
            assert kind in r.headers["content-type"]


def test_accounts_lists_who_owns_meshes_traces_and_proxies(server, demo):
    status, body = get_json(server, "/accounts", account=demo["account"])
    assert status == 200
    assert body["default"] == {"account": "123456789012", "region": "us-east-1"}
    assert {a["account"] for a in body["accounts"]} == {demo["account"]}  # nobody else's
    mine = next(a for a in body["accounts"] if a["account"] == demo["account"])
    assert mine == {
        "account": demo["account"],
        "region": "us-east-1",
        "meshes": 1,
        "traces": 3,
        "proxies": 2,
    }


def test_meshes_are_listed_per_account_and_region(server, demo):
    status, body = get_json(server, "/meshes", account=demo["account"])
    assert status == 200
    assert body["meshes"] == [
        {
            "name": MESH,
            "owner": demo["account"],
            "egress": "DROP_ALL",
            "virtualGateway": 1,
            "virtualService": 2,
            "virtualRouter": 1,
            "virtualNode": 3,
        }
    ]
    assert get_json(server, "/meshes", account=new_account())[1]["meshes"] == []
    assert (
        get_json(server, "/meshes", account=demo["account"], region="eu-west-1")[1]["meshes"] == []
    )


def test_a_mesh_is_a_graph_with_weights_on_its_edges(server, demo):
    status, body = get_json(server, f"/meshes/{MESH}", account=demo["account"])
    assert status == 200
    boxes = {node["id"]: (node["column"], node["row"]) for node in body["graph"]["nodes"]}
    assert boxes == {
        "gateway:gateway": (0, 0),
        "service:a.demo.local": (1, 0),
        "node:node-a": (4, 0),
        "service:b.demo.local": (1, 1),
        "router:b-router": (2, 1),
        "route:b-router/b-route": (3, 1),
        "node:node-b": (4, 1),
        "node:node-b-v2": (4, 2),
    }
    edges = {(e["from"], e["to"]): e for e in body["graph"]["edges"]}
    assert edges[("gateway:gateway", "service:a.demo.local")]["label"] == "to-a\nhttp prefix /"
    weights = {
        to: (edges[(source, to)]["weight"], edges[(source, to)]["percent"])
        for source, to in edges
        if source == "route:b-router/b-route"
    }
    assert weights == {"node:node-b": (3, 75), "node:node-b-v2": (1, 25)}
    assert edges[("node:node-a", "service:b.demo.local")]["kind"] == "backend"
    assert "│  └─ 25% (weight 1) → node node-b-v2" not in body["text"]
    assert "└─ 25% (weight 1) → node node-b-v2" in body["text"]


def test_an_unknown_mesh_is_404(server, demo):
    status, body = get_json(server, "/meshes/nope", account=demo["account"])
    assert status == 404 and "nope" in body["detail"]


def test_a_shared_mesh_is_read_with_its_owner(server, demo):
    consumer = new_account()
    status, _ = get_json(server, f"/meshes/{MESH}", account=consumer, owner=demo["account"])
    assert status == 404  # not shared yet

    def client_for(service: str, account: str):
        return make_client(server.endpoint, service, account)

    share_mesh(client_for, demo["account"], MESH, consumer)
    status, body = get_json(server, f"/meshes/{MESH}", account=consumer, owner=demo["account"])
    assert status == 200 and body["tree"]["facts"]["owner"] == demo["account"]


def test_another_accounts_data_is_not_served_by_naming_it(server, demo):
    url = f"{server.endpoint}/_appmesh/console/api/meshes?account={demo['account']}"
    try:
        urllib.request.urlopen(url, timeout=10)
        raise AssertionError("served another account's meshes to an unsigned request")
    except urllib.error.HTTPError as error:
        assert error.code == 403
    for path in ("/meshes", "/proxies", "/traces"):
        status, body = get_json(server, path, account=new_account())
        assert status == 200 and demo["account"] not in json.dumps(body)


def test_the_service_map_has_rates_errors_and_latency_on_each_edge(server, demo):
    status, body = get_json(server, "/servicemap", account=demo["account"], minutes=5)
    assert status == 200 and body["available"] is True
    names = {node["id"]: (node["name"], node["column"]) for node in body["nodes"]}
    assert sorted(names.values()) == [("clients", 0), (GATEWAY, 1), (NODE_A, 2), (NODE_B, 3)]
    edges = {(e["fromName"], e["toName"]): e["stats"] for e in body["edges"]}
    assert edges[(NODE_A, NODE_B)] == {
        "requests": 3,
        "perMinute": 0.6,
        "errors4xx": 0,
        "faults5xx": 3,
        "errorRate": 0.0,
        "faultRate": 1.0,
        "avgLatencyMs": 200.0,
    }
    assert edges[(GATEWAY, NODE_A)]["faults5xx"] == 0
    assert edges[(GATEWAY, NODE_A)]["avgLatencyMs"] == 400.0
    assert edges[("clients", GATEWAY)]["requests"] == 3


def test_the_service_map_draws_one_clients_box_for_every_root(server):
    """X-Ray gives each root service a client node of its own; the map merges them."""
    account = new_account()
    xray = make_client(server.endpoint, "xray", account)
    for trace in crowded_traces(time.time() - 20):
        assert (
            xray.put_trace_segments(TraceSegmentDocuments=trace.texts())["UnprocessedTraceSegments"]
            == []
        )
    body = get_json(server, "/servicemap", account=account, minutes=5)[1]
    clients = [node for node in body["nodes"] if node["kind"] == "client"]
    assert [(node["name"], node["column"], node["row"]) for node in clients] == [("clients", 0, 0)]
    called = sorted(e["toName"] for e in body["edges"] if e["from"] == clients[0]["id"])
    assert called == [FRONTEND, REPORTS]
    assert {e["from"] for e in body["edges"]} <= {node["id"] for node in body["nodes"]}


def test_the_service_map_window_is_checked(server, demo):
    assert get_json(server, "/servicemap", account=demo["account"], minutes=0)[0] == 400
    empty = get_json(server, "/servicemap", account=new_account())[1]
    assert empty["nodes"] == [] and empty["edges"] == []


def test_traces_are_listed_newest_first_and_filtered(server, demo):
    status, body = get_json(server, "/traces", account=demo["account"])
    assert status == 200
    ids = [trace.trace_id for trace in reversed(demo["traces"])]
    assert [row["id"] for row in body["traces"]] == ids
    first = body["traces"][0]
    assert (first["root"], first["status"], first["duration"]) == (GATEWAY, "200 ok", 0.6)
    assert first["http"] == "GET http://gateway.demo/colors"
    found = get_json(server, "/traces", account=demo["account"], filter="responsetime > 1")
    assert found == (200, {"available": True, "traces": []})
    status, bad = get_json(server, "/traces", account=demo["account"], filter="((")
    assert status == 400 and bad["detail"]


def test_a_trace_is_a_waterfall(server, demo):
    trace_id = demo["traces"][0].trace_id
    status, body = get_json(server, f"/traces/{trace_id}", account=demo["account"])
    assert status == 200 and body["id"] == trace_id and body["duration"] == 0.6
    rows = [(r["name"], r["depth"], r["type"], r["offset"], r["duration"]) for r in body["rows"]]
    assert rows == [
        (GATEWAY, 0, "segment", 0.0, 0.5),
        (NODE_A, 1, "subsegment", 0.05, 0.4),
        (NODE_A, 2, "segment", 0.1, 0.3),
        (NODE_B, 3, "subsegment", 0.15, 0.2),
        (NODE_B, 4, "segment", 0.2, 0.4),
    ]
    assert [(r["status"], r["outcome"]) for r in body["rows"]][-1] == (503, "fault")
    assert get_json(server, f"/traces/{trace_id}", account=new_account())[0] == 404


def test_proxies_show_address_versions_and_rejections(server, demo):
    status, body = get_json(server, "/proxies", account=demo["account"])
    assert status == 200
    proxies = {p["resourceName"]: p for p in body["proxies"]}
    assert set(proxies) == {"node-a", "node-b"}
    node_a, node_b = proxies["node-a"], proxies["node-b"]
    assert node_a["ingressAddress"] == "127.0.0.1:25001"
    listeners = "type.googleapis.com/envoy.config.listener.v3.Listener"
    assert node_a["acceptedVersions"] == {listeners: demo["versions"]["node-a"]}
    assert node_a["connectedSeconds"] >= 0
    assert node_b["rejected"][listeners]["message"] == "listener port already in use"
    assert get_json(server, "/proxies", account=new_account())[1]["proxies"] == []
