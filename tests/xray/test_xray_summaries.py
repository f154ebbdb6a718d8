"""GetTraceSummaries: real durations, root facts, every filter kind and pagination."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.xray.helpers import GATEWAY, NODE_B, PROXY, Trace, http, three_hop


@pytest.fixture(scope="module")
def cases(server) -> tuple[object, dict[str, str], float]:
    """One account holding five traces, each tagged with annotation ``case``."""
    from tests.conftest import new_account

    xray = make_client(server.endpoint, "xray", new_account())
    now = time.time()
    traces: dict[str, Trace] = {
        "three_hop": three_hop(now - 50, {"case": "three_hop", "n": 1, "canary": True}),
    }
    for index, (case, status, seconds) in enumerate(
        [
            ("not_found", 404, 0.05),
            ("fault", 503, 2.0),
            ("throttled", 429, 0.1),
            ("fast", 200, 0.01),
        ]
    ):
        trace = Trace(now - 40 + index)
        fields = {"http": http(status, url=f"http://gateway.demo/{case}"), "user": f"user-{case}"}
        trace.segment(GATEWAY, 0, seconds, annotations={"case": case, "n": index + 2}, **fields)
        traces[case] = trace
    texts = [text for trace in traces.values() for text in trace.texts()]
    assert xray.put_trace_segments(TraceSegmentDocuments=texts)["UnprocessedTraceSegments"] == []
    ids = {trace.trace_id: case for case, trace in traces.items()}
    return xray, ids, now


def _found(cases, expression: str | None = None) -> set[str]:
    xray, ids, now = cases
    extra = {"FilterExpression": expression} if expression else {}
    result = xray.get_trace_summaries(StartTime=now - 120, EndTime=now, **extra)
    return {ids[summary["Id"]] for summary in result["TraceSummaries"]}


ALL = {"three_hop", "not_found", "fault", "throttled", "fast"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (None, ALL),
        (f'service("{NODE_B}")', {"three_hop"}),
        (f'service(id(name: "{NODE_B}", type: "{PROXY}"))', {"three_hop"}),
        ('service("nobody")', set()),
        (f'service("{NODE_B}") {{ fault }}', {"three_hop"}),
        (f'edge("{GATEWAY}", "demo/node-a") {{ ok }}', {"three_hop"}),
        ('annotation.case = "fault"', {"fault"}),
        ('annotation.case BEGINSWITH "f"', {"fault", "fast"}),
        ("annotation.n >= 3", {"fault", "throttled", "fast"}),
        ("annotation.canary = true", {"three_hop"}),
        ("annotation.canary", {"three_hop"}),
        ("http.status = 503", {"fault"}),
        ("http.status >= 400 AND http.status < 500", {"not_found", "throttled"}),
        ('http.url CONTAINS "/fast"', {"fast"}),
        ('http.method = "GET" AND user = "user-fast"', {"fast"}),
        ("responsetime > 1", {"fault"}),
        ("responsetime >= 0.5 AND responsetime < 1", {"three_hop"}),
        ("duration >= 0.6", {"three_hop", "fault"}),
        ("duration < 0.02", {"fast"}),
        ("fault", {"fault"}),
        ("error", {"not_found", "throttled"}),
        ("throttle", {"throttled"}),
        ("ok", {"three_hop", "fast"}),
        ("fault = false AND error != true", {"three_hop", "fast"}),
        ("!ok", {"not_found", "fault", "throttled"}),
        ("fault OR throttle", {"fault", "throttled"}),
        ('!(annotation.case = "fast" OR error) AND !fault', {"three_hop"}),
        ('group.name = "Default"', ALL),
    ],
)
def test_filter_expressions(cases, expression, expected):
    assert _found(cases, expression) == expected


@pytest.mark.parametrize(
    "expression",
    ["fault AND", "annotation.case = ", 'service("x"', "bogus", 'http.status = "x"', "ok OR )"],
)
def test_bad_filter_expressions_are_invalid_requests(cases, expression):
    xray, _ids, now = cases
    with pytest.raises(ClientError) as caught:
        xray.get_trace_summaries(StartTime=now - 60, EndTime=now, FilterExpression=expression)
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "Invalid filter expression" in caught.value.response["Error"]["Message"]


def test_summary_of_a_three_hop_trace(cases):
    xray, _ids, now = cases
    summaries = xray.get_trace_summaries(
        StartTime=now - 120, EndTime=now, FilterExpression='annotation.case = "three_hop"'
    )["TraceSummaries"]
    (summary,) = summaries
    assert summary["Duration"] == pytest.approx(0.6, abs=1e-3)  # B finished after the root
    assert summary["ResponseTime"] == pytest.approx(0.5, abs=1e-3)
    assert isinstance(summary["Duration"], float)
    assert (summary["HasFault"], summary["HasError"], summary["HasThrottle"]) == (
        False,
        False,
        False,
    )
    assert summary["Http"] == {
        "HttpURL": "http://gateway.demo/colors",
        "HttpStatus": 200,
        "HttpMethod": "GET",
        "UserAgent": "curl",
        "ClientIp": "10.0.0.7",
    }
    assert summary["EntryPoint"]["Name"] == GATEWAY and summary["EntryPoint"]["Type"] == PROXY
    assert [s["Name"] for s in summary["ServiceIds"]] == [GATEWAY, "demo/node-a", NODE_B]
    assert summary["Annotations"]["canary"][0]["AnnotationValue"] == {"BooleanValue": True}
    assert summary["Annotations"]["n"][0]["AnnotationValue"] == {"NumberValue": 1.0}
    assert summary["Annotations"]["case"][0]["ServiceIds"][0]["Name"] == GATEWAY
    assert summary["IsPartial"] is False


def test_root_flags_and_throttle(cases):
    xray, ids, now = cases
    summaries = xray.get_trace_summaries(StartTime=now - 120, EndTime=now)["TraceSummaries"]
    by_case = {ids[s["Id"]]: s for s in summaries}
    assert by_case["fault"]["HasFault"] and not by_case["fault"]["HasError"]
    assert by_case["not_found"]["HasError"] and not by_case["not_found"]["HasThrottle"]
    assert by_case["throttled"]["HasThrottle"] and by_case["throttled"]["HasError"]
    assert by_case["fault"]["ResponseTime"] == pytest.approx(2.0, abs=1e-3)
    assert by_case["fast"]["Users"][0]["UserName"] == "user-fast"
    # Newest first, as X-Ray pages its results.
    starts = [s["StartTime"] for s in summaries]
    assert starts == sorted(starts, reverse=True)


def test_time_range_types(cases):
    xray, ids, now = cases
    assert _found(cases) == ALL
    none = xray.get_trace_summaries(StartTime=now - 5, EndTime=now, TimeRangeType="TraceId")
    assert none["TraceSummaries"] == []
    service = xray.get_trace_summaries(StartTime=now - 40, EndTime=now, TimeRangeType="Service")[
        "TraceSummaries"
    ]
    assert {ids[s["Id"]] for s in service} == ALL - {"three_hop"}  # it ended 49.4 s ago
    # Event: when the trace was last written (just now), not when its requests happened.
    event = xray.get_trace_summaries(
        StartTime=now - 1, EndTime=time.time() + 1, TimeRangeType="Event"
    )["TraceSummaries"]
    assert {ids[s["Id"]] for s in event} == ALL


def test_pagination_with_next_token(server, account):
    xray = make_client(server.endpoint, "xray", account)
    now = time.time()
    traces = [Trace(now - 100 + index * 0.5) for index in range(130)]
    for trace in traces:
        trace.segment("demo/many", 0, 0.01)
    texts = [text for trace in traces for text in trace.texts()]
    xray.put_trace_segments(TraceSegmentDocuments=texts)

    first = xray.get_trace_summaries(StartTime=now - 200, EndTime=now)
    assert len(first["TraceSummaries"]) == 100 and first["TracesProcessedCount"] == 130
    second = xray.get_trace_summaries(
        StartTime=now - 200, EndTime=now, NextToken=first["NextToken"]
    )
    assert len(second["TraceSummaries"]) == 30 and "NextToken" not in second
    seen = [s["Id"] for s in first["TraceSummaries"] + second["TraceSummaries"]]
    assert sorted(seen) == sorted(t.trace_id for t in traces)

    pages = xray.get_paginator("get_trace_summaries").paginate(StartTime=now - 200, EndTime=now)
    assert sum(len(page["TraceSummaries"]) for page in pages) == 130
    with pytest.raises(ClientError) as caught:
        xray.get_trace_summaries(StartTime=now - 10, EndTime=now, NextToken=first["NextToken"])
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"


def test_documents_are_returned_verbatim_in_summary_order(cases):
    xray, ids, _now = cases
    by_case = {case: trace_id for trace_id, case in ids.items()}
    traces = xray.batch_get_traces(TraceIds=[by_case["fast"]])["Traces"]
    document = json.loads(traces[0]["Segments"][0]["Document"])
    assert document["annotations"]["case"] == "fast"
