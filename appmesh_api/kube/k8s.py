"""A Kubernetes API for the App Mesh controller's kinds, so an unmodified kubectl works.

``appmesh-local kube kubeconfig`` points kubectl at
``/_appmesh/kube/clusters/{account}/{region}``: the account and region stand for the
EKS cluster, as in ``appmesh-local kube``. Served: discovery (``/api``, ``/apis``),
OpenAPI v3 from the controller's own CRD schemas (``crds/``), and get, list, create,
replace, patch (merge, strategic-merge for Namespace labels, server-side apply) and
delete of ``Namespace`` and the seven ``appmesh.k8s.aws/v1beta2`` kinds, answered
with Kubernetes' ``Status`` errors and ``Table`` listings. Everything else is a 404
that says appmesh-local is not a Kubernetes cluster. ``/openapi/v2`` is an empty
OpenAPI v2 document (no definitions): kubectl validates a kind that OpenAPI v3 does
not know (a Deployment) against it, and with no schema it leaves the kind to the
server, so a walkthrough's Deployments fail alone with kubectl's own "no matches for
kind" while its App Mesh objects are applied.

Writes go through ``KubeController``: an object App Mesh rejects is refused (422
Invalid, nothing stored; UNCONFIRMED: the controller accepted some such objects and
failed them later), one that waits on another object is stored not Active, exactly
as ``appmesh-local kube apply``. The kubeconfig's token is not checked: the URL
names the account (UNCONFIRMED: EKS authenticated with IAM).
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import json
import time
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from appmesh_api.kube.controller import KubeController, not_found
from appmesh_api.kube.objects import (
    CORE_KINDS,
    GROUP,
    KINDS,
    MAX_MANIFEST_BYTES,
    KindInfo,
    KubeObject,
    ManifestError,
    parse_object,
)

PREFIX = "/_appmesh/kube/clusters/{account}/{region}"
VERSION = "v1beta2"
_BY_PLURAL = {info.plural: info for info in KINDS.values()}
_SERVER_FIELDS = (
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "managedFields",
    "deletionTimestamp",
    "finalizers",
)


class KubeStatus(Exception):
    """A Kubernetes ``Status`` failure: code, reason (NotFound, Invalid, ...) and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        return _json(body, self.code)


def k8s_router(controller: KubeController) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def serve(request: Request, account: str, region: str, path: str) -> Response:
        body = await request.body()
        try:
            if len(body) > MAX_MANIFEST_BYTES:
                raise KubeStatus(413, "RequestEntityTooLarge", "request body too large")
            controller.settle(account, region)
            api = KubeApi(controller, account, region)
            return api.dispatch(request.method, path.strip("/"), request, body)
        except KubeStatus as status:
            return status.response()

    return router


class KubeApi:
    def __init__(self, controller: KubeController, account: str, region: str) -> None:
        self.controller, self.account, self.region = controller, account, region

    # -- routing -----------------------------------------------------------------------------
    def dispatch(self, method: str, path: str, request: Request, body: bytes) -> Response:
        parts = path.split("/") if path else []
        if parts == ["openapi", "v2"] and method == "GET":
            return Response(_OPENAPI_V2, media_type=OPENAPI_V2_TYPE)
        discovery = self._discovery(parts)
        if discovery is not None:
            if method != "GET":
                raise KubeStatus(405, "MethodNotAllowed", f"{method} is not allowed on /{path}")
            return _json(discovery)
        info, namespace, name = self._target(parts, path)
        if info is None:  # events: kubectl describe asks; there are none to give
            return _json({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []})
        if name is None:
            if method == "GET":
                return self._list(info, namespace, request)
            if method == "POST":
                return self._create(info, namespace, body)
            raise KubeStatus(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if method == "GET":
            return _json(self._get(info, namespace, name))
        if method == "PUT":
            return self._write(info, namespace, name, _decode(body), created=False)
        if method == "PATCH":
            return self._patch(info, namespace, name, request, body)
        return self._delete(info, namespace, name)

    def _discovery(self, parts: list[str]) -> dict | None:
        match parts:
            case ["version"]:
                return {"major": "1", "minor": "32", "gitVersion": "v1.32.0+appmesh-local"}
            case ["api"]:
                return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            case ["apis"]:
                return _group_list()
            case ["api", "v1"]:
                return _resource_list("v1", [KINDS[kind] for kind in CORE_KINDS])
            case ["apis", group] if group == GROUP:
                return _group_list()["groups"][0]
            case ["apis", group, version] if group == GROUP and version == VERSION:
                return _resource_list(f"{GROUP}/{VERSION}", _appmesh_kinds())
            case ["openapi", "v3"]:
                return _openapi_index(self.account, self.region)
            case ["openapi", "v3", "apis", group, version] if group == GROUP:
                return _openapi_group() if version == VERSION else None
            case ["openapi", "v3", "api", "v1"]:
                return _openapi_core()
        return None

    def _target(self, parts: list[str], path: str) -> tuple[KindInfo | None, str, str | None]:
        """``(kind, namespace, name or None for a collection)`` a resource path names."""
        core = parts[:2] == ["api", "v1"]
        ours = parts[:3] == ["apis", GROUP, VERSION]
        rest = parts[2:] if core else parts[3:] if ours else None
        if rest is None or not rest:
            raise KubeStatus(
                404,
                "NotFound",
                f"the server could not find the requested resource (/{path}): appmesh-local "
                "serves only Namespace and the App Mesh controller's appmesh.k8s.aws kinds, "
                "it is not a Kubernetes cluster",
            )
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:  # namespaces/NS/plural[/name]
            namespace, rest = rest[1], rest[2:]
        if rest[0] == "events":
            return None, namespace, None
        info = _BY_PLURAL.get(rest[0])
        if info is None or (info.kind in CORE_KINDS) != core or len(rest) > 2:
            raise KubeStatus(
                404,
                "NotFound",
                f'the server doesn\'t have a resource type "{rest[0]}"; appmesh-local is not '
                "a Kubernetes cluster and serves only the App Mesh controller's kinds",
            )
        if info.namespaced and not namespace and len(rest) == 2:
            raise KubeStatus(400, "BadRequest", f"{info.plural} are namespaced: name a namespace")
        return info, namespace, rest[1] if len(rest) == 2 else None

    # -- reads -------------------------------------------------------------------------------
    def _documents(self, info: KindInfo, namespace: str) -> list[dict]:
        return [
            d
            for d in self.controller.get(self.account, self.region)
            if d["kind"] == info.kind
            and (not namespace or d["metadata"].get("namespace", "") == namespace)
        ]

    def _get(self, info: KindInfo, namespace: str, name: str) -> dict:
        key = (info.kind, namespace if info.namespaced else "", name)
        document = self.controller.document(self.account, self.region, key)
        if document is None:
            raise KubeStatus(404, "NotFound", _not_found(info, name))
        return document

    def _list(self, info: KindInfo, namespace: str, request: Request) -> Response:
        if request.query_params.get("watch") in ("true", "1"):
            return self._watch(info, namespace, request)
        items = self._selected(info, namespace, request)
        if "as=Table" in request.headers.get("accept", ""):
            return _json(_table(info, items))
        version = str(time.time_ns())
        return _json(
            {
                "apiVersion": info.api_version,
                "kind": f"{info.kind}List",
                "metadata": {"resourceVersion": version},
                "items": items,
            }
        )

    def _watch(self, info: KindInfo, namespace: str, request: Request) -> Response:
        """A watch, as kubectl's ``delete --wait`` and ``get -w`` use it: one JSON event per
        line (ADDED, MODIFIED, DELETED) from a 0.1 s look at the store, until
        ``timeoutSeconds`` (at most 5 minutes) or the client goes away."""
        timeout = min(float(request.query_params.get("timeoutSeconds") or 300), 300.0)
        since = request.query_params.get("resourceVersion")

        async def events() -> AsyncIterator[bytes]:
            seen: dict[str, dict] = {}
            first = True
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not await request.is_disconnected():
                self.controller.settle(self.account, self.region)
                now = {_uid(d): d for d in self._selected(info, namespace, request)}
                for uid, document in now.items():
                    old = seen.get(uid)
                    if old is None and not (first and since):
                        yield _event("ADDED", document)
                    elif old is not None and old != document:
                        yield _event("MODIFIED", document)
                for uid, document in seen.items():
                    if uid not in now:
                        yield _event("DELETED", document)
                seen, first = now, False
                await asyncio.sleep(0.1)

        return StreamingResponse(events(), media_type="application/json")

    def _selected(self, info: KindInfo, namespace: str, request: Request) -> list[dict]:
        """The objects of a collection that its field and label selectors pick."""
        items = self._documents(info, namespace)
        selector = request.query_params.get("fieldSelector", "")
        for clause in filter(None, selector.split(",")):
            field, _, value = clause.partition("=")
            value = value.lstrip("=")
            key = field.removeprefix("metadata.")
            items = [d for d in items if str(d["metadata"].get(key, "")) == value]
        labels = request.query_params.get("labelSelector", "")
        for clause in filter(None, labels.split(",")):
            label, _, value = clause.partition("=")
            items = [d for d in items if d["metadata"].get("labels", {}).get(label) == value]
        return items

    # -- writes ------------------------------------------------------------------------------
    def _create(self, info: KindInfo, namespace: str, body: bytes) -> Response:
        document = _decode(body)
        name = (document.get("metadata") or {}).get("name")
        if not isinstance(name, str):
            raise KubeStatus(422, "Invalid", f"{info.kind}: metadata.name is required")
        key = (info.kind, namespace if info.namespaced else "", name)
        if self.controller.document(self.account, self.region, key) is not None:
            raise KubeStatus(409, "AlreadyExists", f'{_plural(info)} "{name}" already exists')
        return self._write(info, namespace, name, document, created=True)

    def _write(
        self, info: KindInfo, namespace: str, name: str, document: dict, created: bool
    ) -> Response:
        document = copy.deepcopy(document)
        metadata = document.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise KubeStatus(422, "Invalid", "metadata must be an object")
        metadata.setdefault("name", name)
        if info.namespaced:
            metadata.setdefault("namespace", namespace)
        if metadata.get("name") != name or (
            info.namespaced and metadata.get("namespace") != namespace
        ):
            raise KubeStatus(400, "BadRequest", "the name or namespace in the body does not match")
        document.setdefault("apiVersion", info.api_version)
        document.setdefault("kind", info.kind)
        try:
            obj = parse_object(_without_server_fields(document))
            outcome = self.controller.apply(self.account, self.region, [obj])[0]
        except ManifestError as exc:
            raise KubeStatus(422, "Invalid", str(exc)) from exc
        if outcome.error:
            raise KubeStatus(422, "Invalid", outcome.error)
        stored = self._get(info, namespace, name)
        return _json(stored, 201 if created else 200)

    def _patch(
        self, info: KindInfo, namespace: str, name: str, request: Request, body: bytes
    ) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind == "application/apply-patch+yaml":  # server-side apply: the whole object
            document = _decode(body)
            try:
                current = self._get(info, namespace, name)
            except KubeStatus:
                return self._write(info, namespace, name, document, created=True)
            merged = {**_without_server_fields(current), **document}
            merged.pop("status", None)
            return self._write(info, namespace, name, merged, created=False)
        current = _without_server_fields(self._get(info, namespace, name))
        current.pop("status", None)
        patch = _decode(body)
        if kind == "application/strategic-merge-patch+json":
            if _has_directives(patch):
                raise KubeStatus(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch directives ($patch, "
                    "$retainKeys...) are not supported; use a merge patch",
                )
        elif kind not in ("application/merge-patch+json",):
            raise KubeStatus(
                415,
                "UnsupportedMediaType",
                f"patch type {kind or 'none'} is not supported; "
                "use application/merge-patch+json or server-side apply",
            )
        return self._write(info, namespace, name, _merge(current, patch), created=False)

    def _delete(self, info: KindInfo, namespace: str, name: str) -> Response:
        document = self._get(info, namespace, name)
        obj = parse_object(_without_server_fields(document))
        outcome = self.controller.delete(self.account, self.region, [obj])[0]
        if outcome.error:
            raise KubeStatus(409, "Conflict", outcome.error)
        details = {"name": name, "group": "" if info.kind in CORE_KINDS else GROUP}
        details["kind"] = info.plural
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {**details, "uid": document["metadata"].get("uid", "")},
            }
        )


# -- documents ---------------------------------------------------------------------------------
def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _uid(document: dict) -> str:
    return str(document["metadata"].get("uid") or document["metadata"]["name"])


def _event(kind: str, document: dict) -> bytes:
    return json.dumps({"type": kind, "object": document}).encode() + b"\n"


def _decode(body: bytes) -> dict:
    try:
        document = yaml.safe_load(body.decode()) if body else {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KubeStatus(400, "BadRequest", f"the body is not JSON or YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise KubeStatus(400, "BadRequest", "the body must be an object")
    return document


def _without_server_fields(document: dict) -> dict:
    document = copy.deepcopy(document)
    metadata = document.get("metadata") or {}
    for field in _SERVER_FIELDS:
        metadata.pop(field, None)
    return document


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _has_directives(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(k).startswith("$") or _has_directives(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_directives(v) for v in value)
    return False


def _plural(info: KindInfo) -> str:
    return info.plural if info.kind in CORE_KINDS else f"{info.plural}.{GROUP}"


def _not_found(info: KindInfo, name: str) -> str:
    obj = KubeObject(info.kind, name, "", {})
    return not_found(obj)


def _table(info: KindInfo, items: list[dict]) -> dict:
    """The ``meta.k8s.io/v1`` Table kubectl prints, with the CRD's printer columns."""
    columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name"}]
    if info.kind not in (*CORE_KINDS, "BackendGroup"):
        columns.append({"name": "ARN", "type": "string", "format": "", "description": "ARN"})
    columns.append({"name": "Age", "type": "date", "format": "", "description": "Age"})
    rows = []
    for item in items:
        status = item.get("status") or {}
        cells = [item["metadata"]["name"]]
        if len(columns) == 3:
            cells.append(next((v for k, v in status.items() if k.endswith("ARN")), "<pending>"))
        cells.append(_age(item["metadata"].get("creationTimestamp")))
        meta = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
        rows.append({"cells": cells, "object": {**meta, "metadata": item["metadata"]}})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(time.time_ns())},
        "columnDefinitions": columns,
        "rows": rows,
    }


def _age(stamp: str | None) -> str:
    if not stamp:
        return ""
    created = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- discovery and OpenAPI ------------------------------------------------------------------------
def _appmesh_kinds() -> list[KindInfo]:
    return [info for info in KINDS.values() if info.kind not in CORE_KINDS]


def _group_list() -> dict:
    version = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
    group = {"name": GROUP, "versions": [version], "preferredVersion": version}
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def _resource_list(group_version: str, kinds: list[KindInfo]) -> dict:
    verbs = ["create", "delete", "get", "list", "patch", "update"]
    resources = [
        {
            "name": info.plural,
            "singularName": info.kind.lower(),
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": verbs,
            **({"categories": ["all", "appmesh"]} if info.kind not in CORE_KINDS else {}),
        }
        for info in kinds
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


# kubectl asks for ``...spec.v2@v1.0+protobuf``; the API server answers with the dotted
# form, since Go's media type parser refuses the "@".
OPENAPI_V2_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _proto_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (every field of the document below is one,
    and all are shorter than 128 bytes, so the length is a single varint byte)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


# UNCONFIRMED: a cluster's /openapi/v2 has every built-in kind; this one has none.
# gnostic's openapi_v2.Document, the form kubectl downloads: swagger (1) "2.0", info (2)
# with title (1) and version (2), and an empty paths (8) - valid, and without definitions.
_OPENAPI_V2 = (
    _proto_field(1, b"2.0")
    + _proto_field(2, _proto_field(1, b"appmesh-local") + _proto_field(2, b"v1.32.0"))
    + _proto_field(8, b"")
)


@cache
def _crds() -> dict[str, dict]:
    return json.loads((Path(__file__).parent / "crds" / "v1beta2.json").read_text())


def _openapi_index(account: str, region: str) -> dict:
    base = PREFIX.format(account=account, region=region)
    return {
        "paths": {
            f"apis/{GROUP}/{VERSION}": {
                "serverRelativeURL": f"{base}/openapi/v3/apis/{GROUP}/{VERSION}"
            },
            "api/v1": {"serverRelativeURL": f"{base}/openapi/v3/api/v1"},
        }
    }


@cache
def _openapi_group() -> dict:
    schemas = {}
    for kind, crd in _crds().items():
        schema = copy.deepcopy(crd["schema"])
        schema["x-kubernetes-group-version-kind"] = [
            {"group": GROUP, "version": VERSION, "kind": kind}
        ]
        schemas[f"k8s.aws.appmesh.{VERSION}.{kind}"] = schema
    paths = {
        _object_path(info): _patch_operation(GROUP, VERSION, info.kind) for info in _appmesh_kinds()
    }
    return {
        "openapi": "3.0.0",
        "info": {"title": "appmesh-local", "version": VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _object_path(info: KindInfo) -> str:
    base = "/api/v1" if info.kind in CORE_KINDS else f"/apis/{GROUP}/{VERSION}"
    where = "/namespaces/{namespace}" if info.namespaced else ""
    return f"{base}{where}/{info.plural}/{{name}}"


def _patch_operation(group: str, version: str, kind: str) -> dict:
    """A path whose PATCH takes ``fieldValidation``: kubectl then leaves validation to
    the server (which refuses unknown fields by path) instead of downloading OpenAPI v2."""
    parameter = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
    operation = {
        "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
        "parameters": [parameter],
        "responses": {"200": {"description": "OK"}},
    }
    return {"patch": operation}


@cache
def _openapi_core() -> dict:
    namespace = {
        "type": "object",
        "description": "A namespace; appmesh-local keeps only its labels (mesh membership).",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Namespace"}],
    }
    return {
        "openapi": "3.0.0",
        "info": {"title": "appmesh-local", "version": "v1"},
        "paths": {
            _object_path(KINDS[kind]): _patch_operation("", "v1", kind) for kind in CORE_KINDS
        },
        "components": {
            "schemas": {
                "io.k8s.api.core.v1.Namespace": namespace,
                "io.k8s.api.core.v1.Pod": {
                    **namespace,
                    "description": "A pod; appmesh-local keeps its labels and annotations "
                    "(Cloud Map registration for awsCloudMap nodes).",
                    "x-kubernetes-group-version-kind": [
                        {"group": "", "version": "v1", "kind": "Pod"}
                    ],
                },
            }
        },
    }
