"""X-Ray's journal holds what memory holds: the byte bound applies to the file too."""

from __future__ import annotations

import json
import sqlite3

from appmesh_api.xray.api import XRayService
from appmesh_api.xray.journal import Journal
from appmesh_api.xray.store import XRayState, document_size


def _document(trace: int, pad: int) -> dict:
    return {
        "trace_id": f"1-{int(1e9) + trace:08x}-{trace:024x}",
        "id": f"{trace:016x}",
        "name": "svc",
        "start_time": 1.0,
        "end_time": 2.0,
        "annotations": {"pad": "p" * pad},
    }


def _put(service: XRayService, account: str, document: dict) -> None:
    body = json.dumps({"TraceSegmentDocuments": [json.dumps(document)]}).encode()
    status, _headers, payload = service.handle(account, "us-east-1", "POST", "/TraceSegments", body)
    assert status == 200, payload


def test_the_file_keeps_the_traces_memory_keeps_and_brings_them_back(tmp_path):
    path = tmp_path / "xray.sqlite3"
    service = XRayService(XRayState(max_bytes=50_000, journal=Journal(path)))
    for trace in range(200):  # 200 accounts of one trace each: 200 KB sent, 50 KB kept
        _put(service, f"{100000000000 + trace}", _document(trace, 1000))
    kept = sorted(p.account for p in service.state.partitions() if len(p.traces))
    size = document_size(_document(0, 1000))
    assert len(kept) == 50_000 // size
    rows = sqlite3.connect(path).execute("SELECT account FROM documents").fetchall()
    assert sorted(account for (account,) in rows) == kept  # the dropped ones are deleted
    service.state.journal.close()  # type: ignore[union-attr]

    again = XRayState(max_bytes=50_000, journal=Journal(path))
    assert sorted(p.account for p in again.partitions() if len(p.traces)) == kept
    assert again.budget.used == service.state.budget.used
    newest = again.partition(kept[-1], "us-east-1").traces.get(_document(199, 0)["trace_id"])
    assert newest is not None and newest.documents[_document(199, 0)["id"]]["name"] == "svc"


def test_a_smaller_bound_on_restart_drops_the_oldest_from_the_file_too(tmp_path):
    path = tmp_path / "xray.sqlite3"
    service = XRayService(XRayState(max_bytes=50_000, journal=Journal(path)))
    for trace in range(40):
        _put(service, "123456789012", _document(trace, 1000))
    service.state.journal.close()  # type: ignore[union-attr]
    smaller = XRayState(max_bytes=10_000, journal=Journal(path))
    (partition,) = smaller.partitions()
    count = len(partition.traces)
    assert 0 < count < 40
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM documents").fetchone()
    assert rows == (count,)


def test_sampling_rules_and_groups_come_back(tmp_path):
    path = tmp_path / "xray.sqlite3"
    service = XRayService(XRayState(journal=Journal(path)))
    rule = {
        "RuleName": "slow", "ResourceARN": "*", "Priority": 5, "FixedRate": 0.2,
        "ReservoirSize": 2, "ServiceName": "*", "ServiceType": "*", "Host": "*",
        "HTTPMethod": "*", "URLPath": "*", "Version": 1,
    }  # fmt: skip
    account, region = "123456789012", "eu-west-1"
    body = json.dumps({"SamplingRule": rule}).encode()
    assert service.handle(account, region, "POST", "/CreateSamplingRule", body)[0] == 200
    group = json.dumps({"GroupName": "faults", "FilterExpression": "fault = true"}).encode()
    assert service.handle(account, region, "POST", "/CreateGroup", group)[0] == 200
    service.state.journal.close()  # type: ignore[union-attr]
    again = XRayState(journal=Journal(path)).partition(account, region)
    assert [r["SamplingRule"]["RuleName"] for r in again.sampling.records()] == ["slow", "Default"]
    assert [g["GroupName"] for g in again.groups.all()] == ["Default", "faults"]
