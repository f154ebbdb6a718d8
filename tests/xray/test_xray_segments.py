"""PutTraceSegments checks and BatchGetTraces assembly (streamed subsegments, in-progress)."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.xray.helpers import Trace, new_id, new_trace_id


@pytest.fixture
def xray(server, account):
    return make_client(server.endpoint, "xray", account)


def _document(xray, trace_id: str) -> list[dict]:
    (trace,) = xray.batch_get_traces(TraceIds=[trace_id])["Traces"]
    return [json.loads(segment["Document"]) for segment in trace["Segments"]]


def test_invalid_documents_come_back_unprocessed(xray):
    now = time.time()
    good = {"name": "ok", "id": new_id(), "trace_id": new_trace_id(now), "start_time": now}
    good["end_time"] = now + 0.1
    bad_id = "70de5b6f19ff9a0b"
    broken = [
        ("{}", None, "MissingParam"),
        ("[1, 2]", None, "InvalidJson"),
        ("not json", None, "InvalidJson"),
        (json.dumps({**good, "id": "xyz"}), "xyz", "InvalidId"),
        (json.dumps({**good, "id": bad_id, "trace_id": "abc"}), bad_id, "InvalidTraceId"),
        (json.dumps({**good, "id": bad_id, "name": None}), bad_id, "MissingParam"),
        (json.dumps({**good, "id": bad_id, "end_time": None}), bad_id, "MissingParam"),
        (json.dumps({**good, "id": bad_id, "end_time": now - 1}), bad_id, "InvalidTime"),
        (json.dumps({**good, "id": bad_id, "type": "subsegment"}), bad_id, "MissingParam"),
        (json.dumps({**good, "id": bad_id, "name": "x" * 70000}), None, "DocumentTooLarge"),
    ]
    result = xray.put_trace_segments(
        TraceSegmentDocuments=[json.dumps(good)] + [text for text, _, _ in broken]
    )
    unprocessed = result["UnprocessedTraceSegments"]
    assert [(u.get("Id"), u["ErrorCode"]) for u in unprocessed] == [
        (entity, code) for _, entity, code in broken
    ]
    assert all(u["Message"] for u in unprocessed)
    assert _document(xray, good["trace_id"])[0]["id"] == good["id"]


def test_missing_documents_parameter_is_rejected_like_aws(server, account):
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", f"{server.endpoint}/TraceSegments", data=b"{}")
    SigV4Auth(Credentials(account, "local"), "xray", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        request.url, data=b"{}", headers=dict(request.headers), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(prepared, timeout=5)
    assert caught.value.code == 400
    assert caught.value.headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert "TraceSegmentDocuments" in json.loads(caught.value.read())["Message"]


def test_streamed_subsegments_are_merged_into_their_parent(xray):
    now = time.time()
    trace = Trace(now - 2)
    segment = trace.segment("demo/node-a", 0, 1.0, subsegments=[])
    inner = {"id": new_id(), "name": "inner", "start_time": now - 1.9, "end_time": now - 1.8}
    streamed = [
        {
            "type": "subsegment",
            "trace_id": trace.trace_id,
            "parent_id": segment["id"],
            "id": new_id(),
            "name": "query",
            "start_time": now - 1.95,
            "end_time": now - 1.7,
            "subsegments": [inner],
        },
        {  # its parent is the subsegment above, streamed before it
            "type": "subsegment",
            "trace_id": trace.trace_id,
            "parent_id": inner["id"],
            "id": new_id(),
            "name": "deepest",
            "start_time": now - 1.85,
            "end_time": now - 1.82,
        },
    ]
    texts = [json.dumps(doc) for doc in reversed(streamed)]  # children first, then parents
    xray.put_trace_segments(TraceSegmentDocuments=texts)
    xray.put_trace_segments(TraceSegmentDocuments=trace.texts())

    (document,) = _document(xray, trace.trace_id)
    (query,) = document["subsegments"]
    assert query["name"] == "query" and "type" not in query and "parent_id" not in query
    assert query["subsegments"][0]["subsegments"][0]["name"] == "deepest"


def test_orphaned_subsegments_are_kept_as_their_own_documents(xray):
    now = time.time()
    trace_id = new_trace_id(now)
    orphan = {
        "type": "subsegment",
        "trace_id": trace_id,
        "parent_id": new_id(),
        "id": new_id(),
        "name": "lost",
        "start_time": now,
        "end_time": now + 0.1,
    }
    xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(orphan)])
    assert _document(xray, trace_id)[0]["name"] == "lost"


def test_complete_segment_replaces_its_in_progress_placeholder(xray):
    now = time.time()
    trace = Trace(now - 1)
    placeholder = {**trace.segment("demo/slow", 0, 0.8), "in_progress": True}
    del placeholder["end_time"]
    xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(placeholder)])
    summary = xray.get_trace_summaries(StartTime=now - 60, EndTime=now)["TraceSummaries"]
    assert summary[0]["IsPartial"] is True and "Duration" not in summary[0]

    xray.put_trace_segments(TraceSegmentDocuments=trace.texts())
    xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(placeholder)])  # arrives late
    (document,) = _document(xray, trace.trace_id)
    assert "in_progress" not in document
    summary = xray.get_trace_summaries(StartTime=now - 60, EndTime=now)["TraceSummaries"]
    assert summary[0]["IsPartial"] is False
    assert summary[0]["Duration"] == pytest.approx(0.8, abs=1e-3)


def test_batch_get_traces_reports_unknown_ids(xray):
    now = time.time()
    trace = Trace(now - 1)
    trace.segment("demo/one", 0, 0.25)
    xray.put_trace_segments(TraceSegmentDocuments=trace.texts())
    unknown = new_trace_id(now)
    result = xray.batch_get_traces(TraceIds=[trace.trace_id, unknown])
    assert result["UnprocessedTraceIds"] == [unknown]
    (found,) = result["Traces"]
    assert found["Id"] == trace.trace_id and found["Duration"] == pytest.approx(0.25)
    assert found["Segments"][0]["Id"] == trace.documents[0]["id"]


def test_accounts_do_not_see_each_other(server, xray):
    now = time.time()
    trace = Trace(now - 1)
    trace.segment("demo/private", 0, 0.1)
    xray.put_trace_segments(TraceSegmentDocuments=trace.texts())
    other = make_client(server.endpoint, "xray", "210987654321")
    assert other.batch_get_traces(TraceIds=[trace.trace_id])["Traces"] == []


def test_put_telemetry_records_is_accepted(xray):
    record = {"Timestamp": time.time(), "SegmentsReceivedCount": 1, "SegmentsSentCount": 1}
    assert (
        xray.put_telemetry_records(TelemetryRecords=[record])["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )


def test_unimplemented_operations_say_so(xray):
    with pytest.raises(ClientError) as caught:
        xray.get_time_series_service_statistics(StartTime=time.time() - 60, EndTime=time.time())
    assert caught.value.response["Error"]["Code"] == "NotImplemented"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
