"""Malformed App Mesh requests, generated from botocore's model of each operation's input.

Every operation starts from a valid request (``BASELINES``: labels naming resources that
exist, a query and a body App Mesh accepts), and each case breaks exactly one thing in
it, so a server that accepted the case would have accepted a request AWS refuses. The
kinds of breakage are the ones a client's own validation would stop before sending:
wrong JSON types, lengths and ranges past the model's bounds, values outside an enum,
lone surrogates and bytes that are not UTF-8, missing and unknown members, two members
of a union, malformed and pathological JSON, and bad URI path segments.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

MESH = "fz"
OWNER_PLACEHOLDER = "{account}"  # replaced by the fuzzed account's id when sent
Path = tuple[str | int, ...]

_HEALTH = {
    "healthyThreshold": 2,
    "intervalMillis": 5000,
    "path": "/ping",
    "protocol": "http",
    "timeoutMillis": 2000,
    "unhealthyThreshold": 2,
}
_LOGGING = {"accessLog": {"file": {"path": "/dev/stdout", "format": {"text": "%START_TIME%"}}}}
_DURATION = {"unit": "s", "value": 10}

SPECS: dict[str, dict[str, Any]] = {
    "Mesh": {
        "egressFilter": {"type": "DROP_ALL"},
        "serviceDiscovery": {"ipPreference": "IPv4_ONLY"},
    },
    "VirtualRouter": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]},
    "VirtualService": {"provider": {"virtualRouter": {"virtualRouterName": "vr"}}},
    "VirtualNode": {
        "listeners": [
            {
                "portMapping": {"port": 8080, "protocol": "http"},
                "healthCheck": _HEALTH,
                "timeout": {
                    "http": {"idle": _DURATION, "perRequest": {"unit": "ms", "value": 500}}
                },
                "outlierDetection": {
                    "baseEjectionDuration": _DURATION,
                    "interval": _DURATION,
                    "maxEjectionPercent": 50,
                    "maxServerErrors": 5,
                },
                "connectionPool": {"http": {"maxConnections": 10, "maxPendingRequests": 10}},
            }
        ],
        "serviceDiscovery": {"dns": {"hostname": "vn.fz.local", "responseType": "LOADBALANCER"}},
        "backends": [{"virtualService": {"virtualServiceName": "vs.fz.local"}}],
        "logging": _LOGGING,
    },
    "Route": {
        "priority": 10,
        "httpRoute": {
            "match": {
                "prefix": "/",
                "method": "GET",
                "headers": [{"name": "x-fuzz", "match": {"exact": "yes"}}],
            },
            "action": {"weightedTargets": [{"virtualNode": "vn", "weight": 1, "port": 8080}]},
            "retryPolicy": {
                "maxRetries": 2,
                "perRetryTimeout": {"unit": "ms", "value": 100},
                "httpRetryEvents": ["server-error"],
                "tcpRetryEvents": ["connection-error"],
            },
            "timeout": {"perRequest": _DURATION},
        },
    },
    "VirtualGateway": {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}, "healthCheck": _HEALTH}],
        "logging": _LOGGING,
    },
    "GatewayRoute": {
        "priority": 5,
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"target": {"virtualService": {"virtualServiceName": "vs.fz.local"}}},
        },
    },
}

#: The resources the fuzzed account holds, in an order their references allow.
SEEDED = [
    ("CreateMesh", {}, {"meshName": MESH, "spec": SPECS["Mesh"]}),
    ("CreateVirtualRouter", {"meshName": MESH}, {"virtualRouterName": "vr"}),
    ("CreateVirtualService", {"meshName": MESH}, {"virtualServiceName": "vs.fz.local"}),
    ("CreateVirtualNode", {"meshName": MESH}, {"virtualNodeName": "vn"}),
    ("CreateRoute", {"meshName": MESH, "virtualRouterName": "vr"}, {"routeName": "rt"}),
    ("CreateVirtualGateway", {"meshName": MESH}, {"virtualGatewayName": "vg"}),
    (
        "CreateGatewayRoute",
        {"meshName": MESH, "virtualGatewayName": "vg"},
        {"gatewayRouteName": "gr"},
    ),
]

_KIND_LABELS = {
    "VirtualRouter": ("virtualRouterName", "vr"),
    "VirtualService": ("virtualServiceName", "vs.fz.local"),
    "VirtualNode": ("virtualNodeName", "vn"),
    "VirtualGateway": ("virtualGatewayName", "vg"),
    "Route": ("routeName", "rt"),
    "GatewayRoute": ("gatewayRouteName", "gr"),
}
_PARENT = {"Route": ("virtualRouterName", "vr"), "GatewayRoute": ("virtualGatewayName", "vg")}
MESH_ARN = f"arn:aws:appmesh:us-east-1:{OWNER_PLACEHOLDER}:mesh/{MESH}"


@dataclass(frozen=True)
class Request:
    """One operation call, before signing: labels are unencoded, the body is a document."""

    operation: str
    labels: dict[str, str]
    query: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Case:
    """One malformed request, as it goes on the wire (path already percent-encoded)."""

    operation: str
    kind: str
    where: str
    method: str
    path: str
    body: bytes


@functools.cache
def model() -> Any:
    """botocore's App Mesh model, loaded once (a load costs ~50 ms)."""
    return botocore.session.get_session().get_service_model("appmesh")


def seed_requests() -> list[Request]:
    """The create calls that give the fuzzed account one resource of every kind."""
    requests = []
    for operation, labels, body in SEEDED:
        kind = operation.removeprefix("Create")
        document = {"spec": SPECS[kind], **body, "tags": [{"key": "k", "value": "v"}]}
        requests.append(Request(operation, labels, {}, document))
    return requests


def baselines() -> list[Request]:
    """A valid request for each of App Mesh's operations, against the seeded resources."""
    requests = [*_kind_requests(), *_mesh_requests(), *_tag_requests()]
    names = {request.operation for request in requests}
    assert names == set(model().operation_names), names ^ set(model().operation_names)
    return requests


def _kind_requests() -> Iterator[Request]:
    for kind, (label, name) in _KIND_LABELS.items():
        parent = {"meshName": MESH, **dict([_PARENT[kind]] if kind in _PARENT else [])}
        own = {**parent, label: name}
        owner = {"meshOwner": OWNER_PLACEHOLDER}
        create = {label: f"{name}2", "spec": SPECS[kind], "clientToken": "fuzz-token"}
        create["tags"] = [{"key": "k", "value": "v"}]
        plural = "VirtualServices" if kind == "VirtualService" else f"{kind}s"
        yield Request(f"Create{kind}", parent, owner, create)
        yield Request(f"Update{kind}", own, owner, {"spec": SPECS[kind], "clientToken": "t"})
        yield Request(f"Describe{kind}", own, owner, None)
        yield Request(f"Delete{kind}", own, owner, None)
        yield Request(f"List{plural}", parent, {**owner, "limit": "10"}, None)


def _mesh_requests() -> Iterator[Request]:
    own = {"meshName": MESH}
    create = {"meshName": "fz2", "spec": SPECS["Mesh"], "tags": [{"key": "k", "value": "v"}]}
    yield Request("CreateMesh", {}, {}, {**create, "clientToken": "fuzz-token"})
    yield Request("UpdateMesh", own, {}, {"spec": SPECS["Mesh"], "clientToken": "t"})
    yield Request("DescribeMesh", own, {"meshOwner": OWNER_PLACEHOLDER}, None)
    yield Request("DeleteMesh", own, {}, None)
    yield Request("ListMeshes", {}, {"limit": "10"}, None)


def _tag_requests() -> Iterator[Request]:
    arn = {"resourceArn": MESH_ARN}
    yield Request("TagResource", {}, arn, {"tags": [{"key": "k2", "value": "v2"}]})
    yield Request("UntagResource", {}, arn, {"tagKeys": ["k"]})
    yield Request("ListTagsForResource", {}, {**arn, "limit": "10"}, None)


def encode(request: Request, account: str) -> tuple[str, str, bytes]:
    """Method, raw path (labels percent-encoded) and body bytes of a request."""
    operation = model().operation_model(request.operation)
    path = operation.http["requestUri"]
    for label, value in request.labels.items():
        path = path.replace("{" + label + "}", value if _is_raw(value) else quote(value, safe=""))
    query = "&".join(
        f"{key}={_query_value(value, account)}" for key, value in request.query.items()
    )
    body = b"" if request.body is None else _dump(request.body)
    return operation.http["method"], path + (f"?{query}" if query else ""), body


def _query_value(value: str, account: str) -> str:
    return value if _is_raw(value) else quote(value.replace(OWNER_PLACEHOLDER, account), safe="")


class Raw(str):
    """A path label sent exactly as written (already percent-encoded, or deliberately not)."""


def _is_raw(value: str) -> bool:
    return isinstance(value, Raw)


def _dump(document: Any) -> bytes:
    """JSON with ASCII escapes, so a lone surrogate goes out as the six bytes ``\\ud800``."""
    return json.dumps(document, ensure_ascii=True).encode("ascii")


def cases(account: str) -> Iterator[Case]:
    """Every malformed variant of every operation's valid request."""
    for request in baselines():
        operation = model().operation_model(request.operation)
        for kind, where, broken in _variants(operation, request):
            if isinstance(broken, Request):
                method, path, body = encode(broken, account)
            else:  # raw body bytes that no document could produce
                method, path, _ = encode(request, account)
                body = broken
            yield Case(request.operation, kind, where, method, path, body)


def _variants(operation: OperationModel, request: Request) -> Iterator[tuple[str, str, Any]]:
    yield from _label_variants(operation, request)
    yield from _query_variants(operation, request)
    if _body_members(operation):
        document = request.body or {}
        for kind, where, value in _document_variants(operation.input_shape, document, ()):
            yield kind, where, _with_body(request, value)
        yield from _whole_body_variants(request)


def _body_members(operation: OperationModel) -> list[str]:
    shape = operation.input_shape
    return [n for n, m in shape.members.items() if not m.serialization.get("location")]


def _with_body(request: Request, body: Any) -> Request:
    return Request(request.operation, request.labels, request.query, body)


# -- URI path segments and query strings ----------------------------------------------

_BAD_SEGMENTS = {
    "too long": "a" * 256,
    "lone surrogate": Raw("n%ED%A0%80"),
    "not UTF-8": Raw("n%FF"),
    "overlong UTF-8 slash": Raw("%C0%AF"),
    "NUL": Raw("n%00"),
    "encoded slash": Raw("a%2Fb"),
    "dot-dot": Raw(".."),
    "space": "a b",
}


def _label_variants(operation: OperationModel, request: Request) -> Iterator[tuple[str, str, Any]]:
    for label in request.labels:
        for name, value in _BAD_SEGMENTS.items():
            labels = {**request.labels, label: value}
            yield (
                "bad path segment",
                f"{label}: {name}",
                Request(request.operation, labels, request.query, request.body),
            )
        empty = {**request.labels, label: Raw("")}
        yield (
            "missing required",
            f"{label} (empty segment)",
            Request(request.operation, empty, request.query, request.body),
        )


_BAD_QUERY = {
    "meshOwner": ["abc", "1" * 13, Raw("12345678901%ED%A0%80"), "12345678901x"],
    "limit": ["0", "101", "-1", "ten", "1.5", str(2**70)],
    "nextToken": ["not-a-token", "a" * 5000],
    "resourceArn": [
        "not-an-arn",
        "arn:aws:appmesh:us-east-1:1:mesh/",
        "a" * 3000,
        Raw("x%ED%A0%80"),
    ],
}


def _query_variants(operation: OperationModel, request: Request) -> Iterator[tuple[str, str, Any]]:
    members = operation.input_shape.members
    names = {m.serialization.get("name", n) for n, m in members.items()}
    for key, values in _BAD_QUERY.items():
        if key not in names:
            continue
        for value in values:
            yield (
                "bad query",
                f"{key}={value[:20]!r}",
                Request(
                    request.operation, request.labels, {**request.query, key: value}, request.body
                ),
            )
    for key in request.query:
        if key in {n for n, m in members.items() if n in operation.input_shape.required_members}:
            query = {k: v for k, v in request.query.items() if k != key}
            yield (
                "missing required",
                f"query {key}",
                Request(request.operation, request.labels, query, request.body),
            )


# -- the JSON body, member by member --------------------------------------------------

_ABSENT = object()


def _document_variants(shape: Shape, value: Any, path: Path) -> Iterator[tuple[str, str, Any]]:
    """Each single-point breakage of the body ``value`` (of ``shape``), as a whole new body."""
    for where, member_shape, member_value in _points(shape, value, path):
        for kind, broken in _breakages(member_shape, member_value):
            yield kind, _render_path(where), _replace(value, where, broken)
    for where, struct_shape, struct_value in _structures(shape, value, path):
        yield (
            "unknown member",
            _render_path(where),
            _replace(value, where, {**struct_value, "fuzzUnknownMember": 1}),
        )
        for required in struct_shape.required_members:
            if required in struct_value and (where or required in _body_keys(struct_shape)):
                without = {k: v for k, v in struct_value.items() if k != required}
                yield (
                    "missing required",
                    _render_path((*where, required)),
                    _replace(value, where, without),
                )
                yield (
                    "missing required",
                    f"{_render_path((*where, required))} = null",
                    _replace(value, where, {**struct_value, required: None}),
                )
        if struct_shape.is_tagged_union and struct_value:
            yield from _union_variants(value, where, struct_shape, struct_value)


def _body_keys(shape: StructureShape) -> set[str]:
    return {n for n, m in shape.members.items() if not m.serialization.get("location")}


def _union_variants(
    document: Any, where: Path, shape: StructureShape, present: dict
) -> Iterator[tuple[str, str, Any]]:
    others = [name for name in shape.members if name not in present]
    if others:  # a union of one member cannot have two set
        two = {**present, others[0]: present[next(iter(present))]}
        yield "union", f"{_render_path(where)}: two members", _replace(document, where, two)
    yield "union", f"{_render_path(where)}: no member", _replace(document, where, {})


def _points(shape: Shape, value: Any, path: Path) -> Iterator[tuple[Path, Shape, Any]]:
    """Every member at or below ``path``: present ones with their value, absent ones too."""
    if path:
        yield path, shape, value
    if value is _ABSENT:
        return
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            if member.serialization.get("location"):
                continue
            yield from _points(member, value.get(name, _ABSENT), (*path, name))
    elif isinstance(shape, ListShape):
        for index, item in enumerate(value):
            yield from _points(shape.member, item, (*path, index))
    elif isinstance(shape, MapShape):
        for key, item in value.items():
            yield from _points(shape.value, item, (*path, key))


def _structures(
    shape: Shape, value: Any, path: Path
) -> Iterator[tuple[Path, StructureShape, dict]]:
    for where, member, present in [((), shape, value), *_points(shape, value, path)]:
        if isinstance(member, StructureShape) and isinstance(present, dict):
            yield where, member, present


_WRONG_TYPES: dict[str, list[Any]] = {
    "structure": ["x", 7, [], True],
    "map": ["x", 7, [], True],
    "list": ["x", 7, {}, True],
    "string": [7, 7.5, {}, [], True],
    "integer": ["7", 7.5, {}, [], True, 1e400],
    "long": ["7", 7.5, {}, [], True],
    "boolean": ["true", 1, {}],
    "timestamp": [{}, [], True],
}


def _breakages(shape: Shape, value: Any) -> Iterator[tuple[str, Any]]:
    """Values of the wrong kind for a member of ``shape`` (currently ``value``)."""
    for wrong in _WRONG_TYPES.get(shape.type_name, []):
        yield "wrong type", wrong
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if shape.type_name == "string":
        yield from _string_breakages(shape, value, low, high)
    elif shape.type_name in ("integer", "long"):
        yield from _number_breakages(low, high)
    elif isinstance(shape, ListShape) and value is not _ABSENT:
        if high is not None and value:
            yield "too long", value * (high + 1)
        if low:
            yield "too short", []


def _string_breakages(
    shape: Shape, value: Any, low: int | None, high: int | None
) -> Iterator[tuple[str, Any]]:
    if high is not None:
        yield "too long", "a" * (high + 1)
    if low:
        yield "too short", "a" * (low - 1)
    if shape.enum:
        yield "bad enum", "NOT_A_VALUE"
        if isinstance(value, str) and value.swapcase() not in shape.enum:
            yield "bad enum", value.swapcase()
    if shape.metadata.get("pattern"):
        yield "bad pattern", "\u00e9\u0000 "
    base = value if isinstance(value, str) else "x"
    yield "lone surrogate", base + "\ud800"
    yield "lone surrogate", "\udfff" + base


def _number_breakages(low: int | None, high: int | None) -> Iterator[tuple[str, Any]]:
    if low is not None:
        yield "out of range", low - 1
    if high is not None:
        yield "out of range", high + 1
    yield "out of range", 2**64
    yield "out of range", -(2**63) - 1


def _replace(document: Any, where: Path, new: Any) -> Any:
    if not where:
        return new
    copied = copy.deepcopy(document)
    parent = copied
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = new
    return copied


def _render_path(path: Path) -> str:
    return ".".join(str(step) for step in path) or "body"


# -- the body as bytes ----------------------------------------------------------------


def _whole_body_variants(request: Request) -> Iterator[tuple[str, str, Any]]:
    valid = _dump(request.body or {})
    yield "malformed JSON", "truncated", valid[:-1]
    yield "malformed JSON", "trailing garbage", valid + b"}"
    yield "malformed JSON", "single quotes", valid.replace(b'"', b"'")
    yield "malformed JSON", "NaN", valid[:-1] + b', "fuzz": NaN}'
    for top in (b"[]", b'"spec"', b"7", b"null", b"true"):
        yield "malformed JSON", f"top level {top.decode()}", top
    yield "not UTF-8", "0xff in a string", _spoil(valid, b"\xff")
    yield "not UTF-8", "latin-1 e-acute", _spoil(valid, "\u00e9".encode("latin-1"))
    yield "not UTF-8", "UTF-16", json.dumps(request.body or {}).encode("utf-16")
    yield "not UTF-8", "UTF-32", json.dumps(request.body or {}).encode("utf-32")
    yield "lone surrogate", "raw CESU-8 bytes", _spoil(valid, b"\xed\xa0\x80")
    for depth in (500, 990, 5000, 100_000):
        yield "deeply nested", f"depth {depth}", _nested(valid, depth)
    yield "huge", "2 MiB body", valid[:-1] + b', "pad": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    yield "huge", "100,000 members", b"{" + b",".join(b'"m%d":1' % i for i in range(100_000)) + b"}"


def _spoil(valid: bytes, bad: bytes) -> bytes:
    """``valid`` with ``bad`` at the start of its last string value (a free-form one in
    every baseline: a tag value or a client token, so only the encoding is wrong)."""
    found = list(re.finditer(rb'(?:: |\[)"', valid))[-1]
    return valid[: found.end()] + bad + valid[found.end() :]


def _nested(valid: bytes, depth: int) -> bytes:
    return valid[:-1] + b', "fuzz": ' + b"[" * depth + b"]" * depth + b"}"
