"""GetServiceGraph and GetTraceGraph over a real server, read with boto3."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.xray.helpers import GATEWAY, NODE_A, NODE_B, PROXY, Trace, three_hop


@pytest.fixture
def xray(server, account):
    return make_client(server.endpoint, "xray", account)


def _by_name(services: list[dict]) -> dict[tuple[str, str], dict]:
    return {(s["Name"], s.get("Type", "")): s for s in services}


def _edges(services: list[dict]) -> dict[tuple[str, str], dict]:
    """(caller name, callee name) -> edge, client nodes spelled ``client``."""
    names = {s["ReferenceId"]: s["Name"] for s in services}
    found = {}
    for service in services:
        source = "client" if service.get("Type") == "client" else service["Name"]
        for edge in service["Edges"]:
            found[(source, names[edge["ReferenceId"]])] = edge
    return found


def test_three_hop_service_graph_has_edges_statistics_and_histograms(xray, account):
    now = time.time()
    traces = [three_hop(now - 20), three_hop(now - 10)]
    for trace in traces:
        assert (
            xray.put_trace_segments(TraceSegmentDocuments=trace.texts())["UnprocessedTraceSegments"]
            == []
        )

    graph = xray.get_service_graph(StartTime=now - 60, EndTime=now + 60)
    services = graph["Services"]
    assert [(s["Name"], s.get("Type")) for s in services] == [
        (GATEWAY, "client"),
        (GATEWAY, PROXY),
        (NODE_A, PROXY),
        (NODE_B, PROXY),
    ]
    assert [s["ReferenceId"] for s in services] == [0, 1, 2, 3]
    nodes = _by_name(services)
    gateway, node_a, node_b = (nodes[(name, PROXY)] for name in (GATEWAY, NODE_A, NODE_B))
    assert gateway["Root"] is True and "Root" not in node_a
    assert {gateway["State"], node_a["State"], node_b["State"]} == {"active"}
    assert gateway["AccountId"] == account
    assert nodes[(GATEWAY, "client")]["State"] == "unknown"

    edges = _edges(services)
    assert set(edges) == {("client", GATEWAY), (GATEWAY, NODE_A), (NODE_A, NODE_B)}
    calls_to_b = edges[(NODE_A, NODE_B)]["SummaryStatistics"]
    assert calls_to_b["TotalCount"] == 2 and calls_to_b["OkCount"] == 0
    assert calls_to_b["FaultStatistics"] == {"OtherCount": 2, "TotalCount": 2}
    assert calls_to_b["TotalResponseTime"] == pytest.approx(0.4, abs=1e-3)  # 2 x 0.2 s
    assert edges[(NODE_A, NODE_B)]["ResponseTimeHistogram"] == [{"Value": 0.2, "Count": 2}]
    calls_to_a = edges[(GATEWAY, NODE_A)]["SummaryStatistics"]
    assert calls_to_a["OkCount"] == 2 and calls_to_a["FaultStatistics"]["TotalCount"] == 0

    assert gateway["SummaryStatistics"]["OkCount"] == 2
    assert gateway["SummaryStatistics"]["TotalResponseTime"] == pytest.approx(1.0, abs=1e-3)
    assert node_b["SummaryStatistics"]["FaultStatistics"]["TotalCount"] == 2
    assert node_b["ResponseTimeHistogram"] == [{"Value": 0.4, "Count": 2}]
    assert node_b["DurationHistogram"] == [{"Value": 0.4, "Count": 2}]
    first = traces[0].documents[0]["start_time"]
    assert gateway["StartTime"].timestamp() == pytest.approx(first, abs=1e-3)
    assert graph["StartTime"].timestamp() == pytest.approx(now - 60, abs=1)


def test_uninstrumented_calls_become_inferred_services(xray):
    now = time.time()
    trace = Trace(now - 5)
    table = {
        "id": "aaaaaaaaaaaaaaa1",
        "name": "DynamoDB",
        "namespace": "aws",
        "start_time": now - 4.9,
        "end_time": now - 4.8,
        "aws": {"operation": "GetItem", "table_name": "colors"},
    }
    api = {
        "id": "aaaaaaaaaaaaaaa2",
        "name": "api.example.com",
        "namespace": "remote",
        "start_time": now - 4.7,
        "end_time": now - 4.6,
        "http": {"response": {"status": 429}},
    }
    trace.segment("demo/node-b", 0, 0.5, subsegments=[table, api])
    xray.put_trace_segments(TraceSegmentDocuments=trace.texts())

    services = xray.get_service_graph(StartTime=now - 60, EndTime=now)["Services"]
    nodes = _by_name(services)
    assert nodes[("colors", "AWS::DynamoDB::Table")]["State"] == "unknown"
    remote = nodes[("api.example.com", "remote")]
    assert remote["SummaryStatistics"]["ErrorStatistics"] == {
        "ThrottleCount": 1,
        "OtherCount": 0,
        "TotalCount": 1,
    }
    assert set(_edges(services)) == {
        ("client", "demo/node-b"),
        ("demo/node-b", "colors"),
        ("demo/node-b", "api.example.com"),
    }


def test_graph_time_window_and_trace_graph(xray):
    now = time.time()
    old, recent = three_hop(now - 3000), three_hop(now - 10)
    xray.put_trace_segments(TraceSegmentDocuments=old.texts() + recent.texts())

    window = xray.get_service_graph(StartTime=now - 60, EndTime=now)["Services"]
    gateway = _by_name(window)[(GATEWAY, PROXY)]
    assert gateway["SummaryStatistics"]["TotalCount"] == 1
    assert xray.get_service_graph(StartTime=now - 100, EndTime=now - 90)["Services"] == []

    one = xray.get_trace_graph(TraceIds=[old.trace_id])["Services"]
    assert _by_name(one)[(GATEWAY, PROXY)]["SummaryStatistics"]["TotalCount"] == 1
    both = xray.get_trace_graph(TraceIds=[old.trace_id, recent.trace_id])["Services"]
    assert _by_name(both)[(NODE_B, PROXY)]["SummaryStatistics"]["TotalCount"] == 2


def test_group_graph_keeps_only_matching_traces(xray):
    now = time.time()
    blue, green = three_hop(now - 10, {"color": "blue"}), Trace(now - 5)
    green.segment("demo/other", 0, 0.1, annotations={"color": "green"})
    xray.put_trace_segments(TraceSegmentDocuments=blue.texts() + green.texts())
    group = xray.create_group(GroupName="blue", FilterExpression='annotation.color = "blue"')
    assert group["Group"]["GroupARN"].startswith("arn:aws:xray:us-east-1:")

    services = xray.get_service_graph(StartTime=now - 60, EndTime=now, GroupName="blue")
    assert {s["Name"] for s in services["Services"]} == {GATEWAY, NODE_A, NODE_B}
    names = {g["GroupName"] for g in xray.get_groups()["Groups"]}
    assert names == {"Default", "blue"}
    with pytest.raises(ClientError) as caught:
        xray.create_group(GroupName="bad", FilterExpression="annotation.color ==")
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"


def test_end_before_start_is_an_invalid_request(xray):
    now = time.time()
    with pytest.raises(ClientError) as caught:
        xray.get_service_graph(StartTime=now, EndTime=now - 60)
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
