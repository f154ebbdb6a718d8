"""The unmodified aws CLI reads appmesh-local's X-Ray, and --aws-endpoint forwards X-Ray."""

from __future__ import annotations

import json
import socket
import time

import boto3
import pytest

from appmesh_api.settings import Settings
from appmesh_api.xray.destinations import environment_region, local_account
from tests.api.test_aws_cli import run_aws
from tests.conftest import make_client, new_account, start_server
from tests.xray.helpers import GATEWAY, NODE_A, NODE_B, Trace, three_hop, wait_for


def test_aws_cli_prints_the_three_hop_service_graph(server):
    account = new_account()
    now = time.time()
    trace = three_hop(now - 10)
    make_client(server.endpoint, "xray", account).put_trace_segments(
        TraceSegmentDocuments=trace.texts()
    )
    window = ["--start-time", str(int(now - 60)), "--end-time", str(int(now + 60))]
    shown = run_aws(server, account, "xray", "get-service-graph", *window)
    assert shown.returncode == 0, shown.stderr
    services = json.loads(shown.stdout)["Services"]
    names = {s["ReferenceId"]: s["Name"] for s in services}
    edges = {
        (s["Name"], names[e["ReferenceId"]])
        for s in services
        if s.get("Type") != "client"
        for e in s["Edges"]
    }
    assert edges == {(GATEWAY, NODE_A), (NODE_A, NODE_B)}
    to_b = next(e for s in services if s["Name"] == NODE_A for e in s["Edges"])
    assert to_b["SummaryStatistics"]["FaultStatistics"]["TotalCount"] == 1

    found = run_aws(
        server,
        account,
        "xray",
        "get-trace-summaries",
        *window,
        "--filter-expression",
        f'service("{NODE_B}") {{ fault }}',
    )
    assert found.returncode == 0, found.stderr
    assert [s["Id"] for s in json.loads(found.stdout)["TraceSummaries"]] == [trace.trace_id]

    bad = run_aws(
        server, account, "xray", "get-trace-summaries", *window, "--filter-expression", "(("
    )
    assert bad.returncode != 0 and "InvalidRequestException" in bad.stderr


@pytest.fixture(scope="module")
def forwarding_server(server, tmp_path_factory):
    """A second server whose side services (X-Ray included) go to the first one."""
    running = start_server(tmp_path_factory.mktemp("forwarding"), "--aws-endpoint", server.endpoint)
    yield running
    running.stop()


def test_aws_endpoint_forwards_xray_instead_of_answering_it(server, forwarding_server):
    account = new_account()
    trace = three_hop(time.time() - 5)
    via = make_client(forwarding_server.endpoint, "xray", account)
    assert (
        via.put_trace_segments(TraceSegmentDocuments=trace.texts())["UnprocessedTraceSegments"]
        == []
    )
    direct = make_client(server.endpoint, "xray", account)
    assert direct.batch_get_traces(TraceIds=[trace.trace_id])["Traces"][0]["Id"] == trace.trace_id


def test_aws_endpoint_daemon_sends_to_that_endpoint(server, forwarding_server):
    """With --aws-endpoint, the built-in daemon signs and sends there, as the server's key."""
    account = local_account(Settings.from_environment())
    reader = boto3.client(
        "xray",
        endpoint_url=server.endpoint,
        region_name=environment_region(),
        aws_access_key_id=account,
        aws_secret_access_key="local",
    )
    trace = Trace(time.time() - 1)
    trace.segment("forwarded/daemon", 0, 0.1)
    (text,) = trace.texts()

    def arrived() -> list:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            datagram = b'{"format":"json","version":1}\n' + text.encode()
            sock.sendto(datagram, ("127.0.0.1", forwarding_server.xray_daemon_port))
        return reader.batch_get_traces(TraceIds=[trace.trace_id])["Traces"]

    wait_for(arrived, timeout=15, every=0.5)
