"""The X-Ray operations appmesh-local serves, each ``(partition, params) -> result``.

Inputs arrive validated against botocore's model (``wire.parse``); results are rendered by
the model too, so members are named and typed as botocore expects. Operations of the
model that are not listed in ``HANDLERS`` answer 501 ``NotImplemented``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal

from appmesh_api.xray import filters, matching
from appmesh_api.xray.analysis import trace_epoch
from appmesh_api.xray.documents import BadSegment, parse_document
from appmesh_api.xray.errors import InvalidRequestException
from appmesh_api.xray.graph import build_graph
from appmesh_api.xray.store import Partition, TraceRecord
from appmesh_api.xray.summaries import summarize
from appmesh_api.xray.wire import epoch

SUMMARY_PAGE_SIZE = 100
Params = dict[str, Any]
Handler = Callable[[Partition, Params], Params]


# ----------------------------------------------------------------------------- traces


def put_trace_segments(partition: Partition, params: Params) -> Params:
    accepted, unprocessed = [], []
    for text in params["TraceSegmentDocuments"]:
        try:
            accepted.append(parse_document(text))
        except BadSegment as bad:
            unprocessed.append(bad.as_unprocessed())
    partition.traces.put(accepted)
    return {"UnprocessedTraceSegments": unprocessed}


def put_telemetry_records(partition: Partition, params: Params) -> Params:
    return {}  # the daemon's health counters: accepted and dropped, as nothing reads them


def batch_get_traces(partition: Partition, params: Params) -> Params:
    traces, missing = [], []
    for trace_id in dict.fromkeys(params["TraceIds"]):
        record = partition.traces.get(trace_id)
        if record is None:
            missing.append(trace_id)
            continue
        documents = record.analysis.assembled.documents()
        traces.append(
            {
                "Id": trace_id,
                "Duration": record.analysis.duration,
                "LimitExceeded": False,
                "Segments": [
                    {"Id": doc.get("id"), "Document": json.dumps(doc, separators=(",", ":"))}
                    for doc in documents
                ],
            }
        )
    return {"Traces": traces, "UnprocessedTraceIds": missing}


def _window(params: Params) -> tuple[float, float]:
    start, end = epoch(params["StartTime"]), epoch(params["EndTime"])
    if end < start:
        raise InvalidRequestException("EndTime must not be before StartTime")
    return start, end


def _event_time(record: TraceRecord, kind: str, start: float, end: float) -> float | None:
    """When a trace happened for TimeRangeType ``kind``, if that falls in [start, end]."""
    moment: float | None
    if kind == "Event":
        moment = record.updated
    elif kind == "Service":
        ends = [seen.end for node in record.analysis.nodes.values() for seen in node.observations]
        moment = max((e for e in ends if e is not None and start <= e <= end), default=None)
    else:  # TraceId: the request time in the trace id
        moment = trace_epoch(record.trace_id)
    return moment if moment is not None and start <= moment <= end else None


def get_trace_summaries(partition: Partition, params: Params) -> Params:
    start, end = _window(params)
    expression = params.get("FilterExpression") or None
    if expression:
        filters.parse(expression)
    kind = params.get("TimeRangeType") or "TraceId"
    found = []
    for record in partition.traces.records():
        moment = _event_time(record, kind, start, end)
        if moment is not None and record.analysis.segments:
            found.append((moment, record))
    lookup = partition.groups.lookup
    matched = [(m, r) for m, r in found if matching.matches(r.analysis, expression, lookup)]
    matched.sort(key=lambda item: (-item[0], item[1].trace_id))
    query = _fingerprint(start, end, kind, expression)
    offset = _decode_token(params.get("NextToken"), query)
    page = matched[offset : offset + SUMMARY_PAGE_SIZE]
    result: Params = {
        "TraceSummaries": [summarize(record, partition.account) for _m, record in page],
        "ApproximateTime": end,
        "TracesProcessedCount": len(found),
    }
    if offset + SUMMARY_PAGE_SIZE < len(matched):
        result["NextToken"] = _encode_token(query, offset + SUMMARY_PAGE_SIZE)
    return result


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _encode_token(query: str, offset: int) -> str:
    raw = json.dumps({"q": query, "o": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str | None, query: str) -> int:
    """The offset a NextToken stands for; it is only valid for the same query."""
    if not token:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        if decoded["q"] == query and isinstance(decoded["o"], int) and decoded["o"] >= 0:
            return decoded["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        pass
    raise InvalidRequestException("The NextToken is invalid for this request")


# ----------------------------------------------------------------------------- graphs


def get_service_graph(partition: Partition, params: Params) -> Params:
    start, end = _window(params)
    expression: filters.Expr | Literal[True] = True  # True: no filter, every trace
    if params.get("GroupName") or params.get("GroupARN"):
        group = partition.groups.find(params.get("GroupName"), params.get("GroupARN"))
        text = group.get("FilterExpression")
        expression = filters.parse(text) if text else True
    analyses = []
    for record in partition.traces.records():
        analysis = record.analysis
        first, last = analysis.start, analysis.end or analysis.start
        if first is None or last is None or first > end or last < start:
            continue
        context = matching.TraceContext(analysis, partition.groups.lookup)
        if expression is True or matching.evaluate(expression, context):
            analyses.append(analysis)
    services = build_graph(analyses, partition.account)
    return {
        "StartTime": start,
        "EndTime": end,
        "Services": services,
        "ContainsOldGroupVersions": False,
    }


def get_trace_graph(partition: Partition, params: Params) -> Params:
    records = [partition.traces.get(trace_id) for trace_id in params["TraceIds"]]
    analyses = [record.analysis for record in records if record is not None]
    return {"Services": build_graph(analyses, partition.account)}


# ----------------------------------------------------------------------------- sampling


def get_sampling_rules(partition: Partition, params: Params) -> Params:
    return {"SamplingRuleRecords": partition.sampling.records()}


def create_sampling_rule(partition: Partition, params: Params) -> Params:
    return {"SamplingRuleRecord": partition.sampling.create(params["SamplingRule"])}


def update_sampling_rule(partition: Partition, params: Params) -> Params:
    return {"SamplingRuleRecord": partition.sampling.update(params["SamplingRuleUpdate"])}


def delete_sampling_rule(partition: Partition, params: Params) -> Params:
    record = partition.sampling.delete(params.get("RuleName"), params.get("RuleARN"))
    return {"SamplingRuleRecord": record}


def get_sampling_targets(partition: Partition, params: Params) -> Params:
    return partition.sampling.targets(params["SamplingStatisticsDocuments"])


def get_sampling_statistic_summaries(partition: Partition, params: Params) -> Params:
    return {"SamplingStatisticSummaries": partition.sampling.statistic_summaries()}


# ----------------------------------------------------------------------------- groups


def create_group(partition: Partition, params: Params) -> Params:
    group = partition.groups.create(
        params["GroupName"], params.get("FilterExpression"), params.get("InsightsConfiguration")
    )
    return {"Group": group}


def get_group(partition: Partition, params: Params) -> Params:
    return {"Group": dict(partition.groups.find(params.get("GroupName"), params.get("GroupARN")))}


def get_groups(partition: Partition, params: Params) -> Params:
    return {"Groups": partition.groups.all()}


def update_group(partition: Partition, params: Params) -> Params:
    group = partition.groups.update(
        params.get("GroupName"),
        params.get("GroupARN"),
        params.get("FilterExpression"),
        params.get("InsightsConfiguration"),
    )
    return {"Group": group}


def delete_group(partition: Partition, params: Params) -> Params:
    partition.groups.delete(params.get("GroupName"), params.get("GroupARN"))
    return {}


# ----------------------------------------------------------------------------- account settings


def get_encryption_config(partition: Partition, params: Params) -> Params:
    return {"EncryptionConfig": {**partition.encryption, "Status": "ACTIVE"}}


def put_encryption_config(partition: Partition, params: Params) -> Params:
    if params["Type"] == "KMS" and not params.get("KeyId"):
        raise InvalidRequestException("KeyId is required when Type is KMS")
    partition.encryption = {"Type": params["Type"]}
    if params["Type"] == "KMS":
        partition.encryption["KeyId"] = params["KeyId"]
    return get_encryption_config(partition, params)


def get_insight_summaries(partition: Partition, params: Params) -> Params:
    _window(params)
    return {"InsightSummaries": []}  # insights are anomaly detection: none happen locally


HANDLERS: dict[str, Handler] = {
    "PutTraceSegments": put_trace_segments,
    "PutTelemetryRecords": put_telemetry_records,
    "BatchGetTraces": batch_get_traces,
    "GetTraceSummaries": get_trace_summaries,
    "GetServiceGraph": get_service_graph,
    "GetTraceGraph": get_trace_graph,
    "GetSamplingRules": get_sampling_rules,
    "CreateSamplingRule": create_sampling_rule,
    "UpdateSamplingRule": update_sampling_rule,
    "DeleteSamplingRule": delete_sampling_rule,
    "GetSamplingTargets": get_sampling_targets,
    "GetSamplingStatisticSummaries": get_sampling_statistic_summaries,
    "CreateGroup": create_group,
    "GetGroup": get_group,
    "GetGroups": get_groups,
    "UpdateGroup": update_group,
    "DeleteGroup": delete_group,
    "GetEncryptionConfig": get_encryption_config,
    "PutEncryptionConfig": put_encryption_config,
    "GetInsightSummaries": get_insight_summaries,
}
