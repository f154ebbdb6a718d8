"""X-Ray's store is bounded in bytes over every account: many accounts cannot exhaust it."""

from __future__ import annotations

from appmesh_api.xray.store import XRayState, document_size


def _document(trace: int, pad: int) -> dict:
    return {
        "trace_id": f"1-5f000000-{trace:024x}",
        "id": f"{trace:016x}",
        "name": "svc",
        "start_time": 1.0,
        "end_time": 2.0,
        "annotations": {"pad": "p" * pad},
    }


def test_documents_over_the_byte_budget_push_out_the_oldest_traces_of_any_account():
    state = XRayState(max_bytes=50_000)
    size = document_size(_document(0, 1000))
    for trace in range(200):  # 200 accounts of one trace each: 200 KB sent, 50 KB kept
        state.partition(f"{100000000000 + trace}", "us-east-1").traces.put([_document(trace, 1000)])
    assert state.budget.used <= 50_000
    kept = [p.account for p in state.partitions() if len(p.traces)]
    assert len(kept) == 50_000 // size
    assert kept[-1] == "100000000199"  # the newest survive
