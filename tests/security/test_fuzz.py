"""Fuzzing App Mesh's API from botocore's model: every malformed request is a 4xx that
changes nothing.

Each of the 38 operations starts from a valid request against resources that exist
(``malformed.baselines``; ``test_each_baseline_is_accepted`` proves they are valid,
so a case that breaks one thing in them tests that one thing). The cases go out raw
over a socket, signed with botocore's SigV4 signer but never through boto3's
parameter validation, which would stop most of them before they were sent. A case
passes when the answer is a 4xx with ``x-amzn-ErrorType`` and a JSON ``message``, as
App Mesh answered, and the account's state (every mesh, every resource in it, every
tag) is the same afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, start_server
from tests.security import malformed
from tests.security.wire import RawReply, request_head, send_raw
from tests.signing import signed_headers

ACCOUNT = "210987650001"
CHECK = "210987650002"  # a second account, where the baselines are run for real

_KINDS = ["VirtualRouter", "VirtualService", "VirtualNode", "Route", "VirtualGateway"]
_KINDS += ["GatewayRoute"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("fuzz"))
    try:
        for account in (ACCOUNT, CHECK):
            for request in malformed.seed_requests():
                reply = _call(running, request, account)
                assert reply.status == 200, (request.operation, reply.body)
        yield running
    finally:
        running.stop()


def send(server: Server, method: str, path: str, body: bytes, account: str) -> RawReply:
    """One raw request, signed by ``account`` with a scope for appmesh in us-east-1."""
    url = f"{server.endpoint}{path}"
    headers = signed_headers(method, url, body, account)
    lines = [f"{name}: {value}" for name, value in headers.items()]
    head = request_head(method, path, *lines, f"Content-Length: {len(body)}")
    return send_raw(server.port, head, body)


def _call(server: Server, request: malformed.Request, account: str) -> RawReply:
    return send(server, *malformed.encode(request, account), account)


def _get(server: Server, path: str, account: str = ACCOUNT) -> dict[str, Any]:
    reply = send(server, "GET", path, b"", account)
    assert reply.status == 200, (path, reply.body)
    return dict(json.loads(reply.body))


def snapshot(server: Server, account: str = ACCOUNT) -> dict[str, Any]:
    """Everything the account holds: each mesh, every resource in it, every tag."""
    state: dict[str, Any] = {}
    for mesh in _get(server, "/v20190125/meshes", account)["meshes"]:
        base = f"/v20190125/meshes/{mesh['meshName']}"
        state[base] = _get(server, base, account)
        for collection, member, child in _COLLECTIONS:
            for item in _get(server, f"{base}/{collection}", account)[member]:
                where = f"{base}/{collection}/{item[child]}"
                state[where] = _get(server, where, account)
                state.update(_children(server, base, collection, item, account))
    resources = list(state.items())
    for where, described in resources:
        arn = quote(described["metadata"]["arn"], safe="")
        state[f"tags of {where}"] = _get(server, f"/v20190125/tags?resourceArn={arn}", account)
    return state


_COLLECTIONS = [
    ("virtualNodes", "virtualNodes", "virtualNodeName"),
    ("virtualRouters", "virtualRouters", "virtualRouterName"),
    ("virtualServices", "virtualServices", "virtualServiceName"),
    ("virtualGateways", "virtualGateways", "virtualGatewayName"),
]


def _children(
    server: Server, base: str, collection: str, item: dict, account: str
) -> dict[str, Any]:
    """A router's routes or a gateway's gateway routes, each described."""
    nested = {
        "virtualRouters": ("virtualRouter", "virtualRouterName", "routes", "routeName"),
        "virtualGateways": (
            "virtualGateway",
            "virtualGatewayName",
            "gatewayRoutes",
            "gatewayRouteName",
        ),
    }
    if collection not in nested:
        return {}
    singular, parent_key, children, child_key = nested[collection]
    listing = f"{base}/{singular}/{item[parent_key]}/{children}"
    found = {}
    for child in _get(server, listing, account)[children]:
        where = f"{listing}/{child[child_key]}"
        found[where] = _get(server, where, account)
    return found


def _problem(reply: RawReply) -> str | None:
    """Why ``reply`` is not the 4xx AWS error App Mesh gave, or None when it is."""
    if not 400 <= reply.status < 500:
        return f"status {reply.status}: {reply.body[:300]!r}"
    if not reply.headers.get("x-amzn-errortype"):
        return f"status {reply.status} without x-amzn-ErrorType: {reply.body[:200]!r}"
    try:
        message = json.loads(reply.body).get("message")
    except (ValueError, AttributeError):
        message = None
    if not isinstance(message, str) or not message:
        return f"status {reply.status} without a JSON message: {reply.body[:200]!r}"
    return None


def test_every_malformed_request_is_a_4xx_that_changes_nothing(api: Server) -> None:
    before = snapshot(api)
    assert len(before) == 14, before.keys()  # a mesh, six resources, their tags
    failures: list[str] = []
    counts: dict[str, int] = {}
    for operation, group in _by_operation(malformed.cases(ACCOUNT)):
        for case in group:
            counts[case.kind] = counts.get(case.kind, 0) + 1
            problem = _problem(send(api, case.method, case.path, case.body, ACCOUNT))
            if problem:
                failures.append(f"{case.operation} [{case.kind}] {case.where}: {problem}")
        after = snapshot(api)
        if after != before:
            changed = sorted(
                k for k in after.keys() | before.keys() if after.get(k) != before.get(k)
            )
            failures.append(f"{operation} changed state: {changed}")
            before = after
    total = sum(counts.values())
    print(f"\n{total} malformed requests: {counts}")
    assert total > 3000, counts
    assert not failures, f"{len(failures)} of {total} failed:\n" + "\n".join(failures[:40])


def _by_operation(cases: Iterator[malformed.Case]) -> Iterator[tuple[str, list[malformed.Case]]]:
    group: list[malformed.Case] = []
    for case in cases:
        if group and group[0].operation != case.operation:
            yield group[0].operation, group
            group = []
        group.append(case)
    if group:
        yield group[0].operation, group


def test_each_baseline_is_accepted(api: Server) -> None:
    """The valid requests the cases break are valid: in a second account, each is a 2xx."""
    requests = malformed.baselines()
    writes_last = [r for r in requests if not r.operation.startswith("Delete")]
    for request in writes_last:
        reply = _call(api, request, CHECK)
        assert reply.status == 200, (request.operation, reply.body)
    _delete_created_copies(api)
    for operation in _DELETE_ORDER:
        request = next(r for r in requests if r.operation == operation)
        reply = _call(api, request, CHECK)
        assert reply.status == 200, (operation, reply.body)
    assert _get(api, "/v20190125/meshes", CHECK)["meshes"] == []


_DELETE_ORDER = [
    "DeleteGatewayRoute",
    "DeleteVirtualGateway",
    "DeleteRoute",
    "DeleteVirtualNode",
    "DeleteVirtualService",
    "DeleteVirtualRouter",
    "DeleteMesh",
]


def _delete_created_copies(api: Server) -> None:
    """Remove what the Create baselines made (``<name>2`` and mesh ``fz2``)."""
    requests = {r.operation: r for r in malformed.baselines()}
    for operation in _DELETE_ORDER:
        request = requests[operation]
        labels = dict(request.labels)
        last = list(labels)[-1]
        labels[last] = "fz2" if operation == "DeleteMesh" else f"{labels[last]}2"
        copy = malformed.Request(operation, labels, request.query, None)
        reply = _call(api, copy, CHECK)
        assert reply.status == 200, (operation, labels, reply.body)


_CREATES = [f"Create{kind}" for kind in ["Mesh", *_KINDS]]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    operation=st.sampled_from(_CREATES),
    body=st.dictionaries(st.text(min_size=1, max_size=12), _JSON, min_size=1, max_size=4)
    | st.binary(max_size=64).map(lambda raw: raw),
)
def test_random_bodies_for_creates_are_refused(api: Server, operation: str, body: Any) -> None:
    """Documents (and bytes) hypothesis makes up: never a 5xx, never a new resource."""
    request = next(r for r in malformed.baselines() if r.operation == operation)
    method, path, _ = malformed.encode(request, ACCOUNT)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if raw.strip() in (b"", b"{}"):
        raw = b"[]"  # an empty body is a request with no members, not a malformed one
    problem = _problem(send(api, method, path, raw, ACCOUNT))
    assert problem is None, (raw[:200], problem)


def test_state_is_still_the_seeded_state(api: Server) -> None:
    """Runs last: after every case above, the fuzzed account holds what it was seeded with."""
    state = snapshot(api)
    assert f"/v20190125/meshes/{malformed.MESH}" in state
    assert not any("fz2" in key or key.endswith("2") for key in state), sorted(state)
