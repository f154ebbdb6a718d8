"""The X-Ray daemon: the real aws-xray-sdk sends over UDP, polls sampling over TCP.

The daemon inside ``serve`` stores segments as its own account (the server's access key,
else the default account), so these tests find their traces by id.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from aws_xray_sdk.core import AWSXRayRecorder
from botocore.config import Config

from appmesh_api.settings import Settings
from appmesh_api.xray.daemon import parse_bind, parse_datagram
from appmesh_api.xray.destinations import environment_region, local_account
from tests.conftest import free_port, new_account
from tests.xray.helpers import Trace, wait_for


def xray_client(endpoint: str, account: str, region: str):
    return boto3.client(
        "xray",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=account,
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def daemon_xray(server):
    """A client for the account and region the server's daemon writes to."""
    account = local_account(Settings.from_environment())
    return xray_client(server.endpoint, account, environment_region())


@pytest.fixture
def recorder(monkeypatch, server):
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    monkeypatch.delenv("AWS_XRAY_SDK_ENABLED", raising=False)
    recorder = AWSXRayRecorder()
    recorder.configure(
        daemon_address=f"127.0.0.1:{server.xray_daemon_port}",
        sampling=False,  # trace everything; sampling has its own test below
        context_missing="LOG_ERROR",
        service="sdk-app",
        streaming_threshold=2,
    )
    return recorder


def _documents(xray, trace_id: str) -> list[dict]:
    traces = xray.batch_get_traces(TraceIds=[trace_id])["Traces"]
    if not traces:
        return []
    return [json.loads(segment["Document"]) for segment in traces[0]["Segments"]]


def test_sdk_segments_reach_the_store_through_the_daemon(recorder, daemon_xray):
    token = secrets.token_hex(4)
    segment = recorder.begin_segment(f"sdk-{token}")
    segment.put_annotation("run", token)
    segment.put_http_meta("url", "http://sdk.local/hello")
    segment.put_http_meta("method", "GET")
    segment.put_http_meta("status", 200)
    for index in range(4):  # past the streaming threshold: some are sent on their own
        recorder.begin_subsegment(f"step-{index}")
        time.sleep(0.01)
        recorder.end_subsegment()
    recorder.end_segment()

    def merged() -> list[dict] | None:
        documents = _documents(daemon_xray, segment.trace_id)
        if len(documents) == 1 and len(documents[0].get("subsegments", [])) == 4:
            return documents
        return None

    (document,) = wait_for(merged)
    assert document["name"] == f"sdk-{token}"
    assert document["aws"]["xray"]["sdk"] == "X-Ray for Python"
    assert [s["name"] for s in document["subsegments"]] == [f"step-{i}" for i in range(4)]
    now = time.time()
    summaries = daemon_xray.get_trace_summaries(
        StartTime=now - 60, EndTime=now + 5, FilterExpression=f'annotation.run = "{token}"'
    )["TraceSummaries"]
    assert [s["Id"] for s in summaries] == [segment.trace_id]
    assert summaries[0]["Http"]["HttpStatus"] == 200
    assert summaries[0]["Duration"] > 0.04


def test_sdk_default_sampler_polls_rules_through_the_daemon(monkeypatch, server, daemon_xray):
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    name = f"sdk-{secrets.token_hex(4)}"
    daemon_xray.create_sampling_rule(
        SamplingRule={
            "RuleName": name,
            "ResourceARN": "*",
            "Priority": 1,
            "FixedRate": 1.0,
            "ReservoirSize": 0,
            "ServiceName": f"{name}-svc",
            "ServiceType": "*",
            "Host": "*",
            "HTTPMethod": "*",
            "URLPath": "*",
            "Version": 1,
        }
    )
    try:
        recorder = AWSXRayRecorder()
        recorder.configure(
            daemon_address=f"127.0.0.1:{server.xray_daemon_port}",
            sampling=True,
            context_missing="LOG_ERROR",
        )
        sampler = recorder.sampler
        sampler.start()  # what the first should_trace does: rule poller asks at once
        rules = wait_for(lambda: [rule.name for rule in sampler._cache.rules])
        assert name in rules and "Default" in rules
        assert sampler.should_trace({"service": f"{name}-svc"}) == name  # rate 1.0
        # The SDK's pollers are daemon threads with no stop(). With no matched rule left
        # the target poller has nothing to report, so it does not call a server that
        # is gone by then and log a traceback into a passing run.
        sampler._cache.rules = []
    finally:
        daemon_xray.delete_sampling_rule(RuleName=name)


def test_daemon_tcp_port_answers_sampling_calls_unsigned(server):
    base = f"http://127.0.0.1:{server.xray_daemon_port}"
    request = urllib.request.Request(f"{base}/GetSamplingRules", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        records = json.loads(response.read())["SamplingRuleRecords"]
    assert "Default" in [r["SamplingRule"]["RuleName"] for r in records]
    body = json.dumps({"SamplingStatisticsDocuments": []}).encode()
    request = urllib.request.Request(f"{base}/SamplingTargets", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert "LastRuleModification" in json.loads(response.read())


def test_raw_datagrams_with_spaced_header_are_accepted(server, daemon_xray):
    trace = Trace(time.time() - 1)
    trace.segment("raw/udp", 0, 0.1)
    (text,) = trace.texts()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for header in (b'{"format": "json", "version": 1}', b"garbage"):
            sock.sendto(header + b"\n" + text.encode(), ("127.0.0.1", server.xray_daemon_port))
    wait_for(lambda: _documents(daemon_xray, trace.trace_id))


def test_datagram_and_bind_parsing():
    assert parse_datagram(b'{"format":"json","version":1}\n{"a":1}') == '{"a":1}'
    assert parse_datagram(b'{"format":"json","version":2}\n{}') is None
    assert parse_datagram(b"no newline") is None
    assert parse_bind("0.0.0.0:2001") == ("0.0.0.0", 2001)
    assert parse_bind("2002") == ("127.0.0.1", 2002)
    assert parse_bind("[::1]:2003") == ("::1", 2003)
    with pytest.raises(ValueError):
        parse_bind("host:99999")


def test_standalone_daemon_signs_and_sends_to_an_endpoint(server, tmp_path):
    """``appmesh-local xray-daemon --endpoint`` sends SigV4-signed calls, as its account."""
    account, port = new_account(), free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": account, "AWS_SECRET_ACCESS_KEY": "local"}
    env.pop("AWS_XRAY_DAEMON_ADDRESS", None)
    command = [sys.executable, "-m", "appmesh_api.cli", "xray-daemon"]
    command += [
        "--bind",
        f"127.0.0.1:{port}",
        "--endpoint",
        server.endpoint,
        "--region",
        "eu-west-1",
    ]
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        trace = Trace(time.time() - 1)
        trace.segment("standalone/daemon", 0, 0.2)
        (text,) = trace.texts()
        xray = xray_client(server.endpoint, account, "eu-west-1")

        def sent() -> list[dict]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                datagram = b'{"format":"json","version":1}\n' + text.encode()
                sock.sendto(datagram, ("127.0.0.1", port))
            return _documents(xray, trace.trace_id)

        wait_for(sent, timeout=15, every=0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/GetSamplingRules", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            (record,) = json.loads(response.read())["SamplingRuleRecords"]
        assert record["SamplingRule"]["RuleARN"].startswith(f"arn:aws:xray:eu-west-1:{account}:")
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    assert process.returncode == 0, (tmp_path / "daemon.log").read_text()
